"""The per-map report: the design sentence, the test-block outlines, the area section in hectares
and km2 (or the reason there is none)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import xarray as xr

from pipeline.accuracy.area import area_adjusted_accuracy
from pipeline.errors import GridError
from pipeline.evaluate import write_map_report
from pipeline.raster.cog import write_class_cog
from pipeline.reference.classes import ClassTable
from pipeline.report import figures
from pipeline.report.html import area_section, design_sentence

CLASSES = [{"id": 1, "name": "forest", "color": "#1b7837"}, {"id": 2, "name": "crops", "color": "#e6c34a"}]
TABLE = ClassTable.from_config(CLASSES)
T = [30.0, 0.0, 500000.0, 0.0, -30.0, 4500000.0]
BLOCKS = {"kind": "spatial_blocks", "block_size": 32, "test_share": 0.3, "test_blocks": 12, "test_pixels": 9000,
          "labelled_pixels": 30000, "buffer_px": 7, "fold": None, "folds": 5, "seed": 0}
PAPER = {"kind": "paper", "labelled_pixels": 30000, "test_pixels": 30000}


def text_of(fragment: str) -> str:
    return re.sub(r"<[^>]+>", "", fragment)


def test_design_sentence_of_spatial_blocks() -> None:
    s = design_sentence(BLOCKS)
    assert text_of(s) == ("Accuracy measured on 9,000 reference pixels in 12 test blocks of 32 x 32 px (30 % of the "
                          "labelled area) that no model saw in training, separated from the training pixels by a "
                          "7 px buffer.")
    assert "warning" not in s
    # the share is the one measured, not the requested one
    assert "(25 % of the labelled area)" in design_sentence({**BLOCKS, "test_pixels": 7500})
    assert "no buffer" in design_sentence({**BLOCKS, "buffer_px": 0})


def test_design_sentence_of_the_paper_design_is_a_warning() -> None:
    s = design_sentence(PAPER)
    assert 'class="design warning"' in s
    assert text_of(s) == ("Accuracy measured on every reference pixel of the map date (30,000 pixels), as in the "
                          "paper: these locations were also used for training at other dates, so the figures are "
                          "optimistic (close to a training accuracy).")
    old = design_sentence(None, 1234)  # reports written before the design was recorded
    assert "warning" in old and "1,234 reference pixels" in old and "did not record" in old


def area_dict(**extra: object) -> dict:
    counts = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
    est = area_adjusted_accuracy(counts, [200_000, 150_000, 3_200_000, 6_450_000], design="stratified_random",
                                 class_names=["deforestation", "gain", "forest", "non-forest"], pixel_area_ha=0.09)
    return {**est.to_dict(), "sample_reference": "file", **extra}


def test_area_section_in_hectares_and_km2_with_integer_pixels() -> None:
    html = "".join(area_section(area_dict()))
    assert "drawn from the whole map" in html and "640 pixels" in html
    # deforestation: 21,158 ha +/- 6,158 ha (Olofsson et al. 2014), 212 +/- 62 km2, 235,086 px
    row = re.search(r"<tr><td>deforestation</td>(.*?)</tr>", html).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells[:5] == ["18,000", "21,158 ± 6,158", "212 ± 62", "200,000", "235,086 ± 68,418"]
    small = "".join(area_section({**area_dict(), "area_km2": {**area_dict()["area_km2"], "deforestation": 2.1158},
                                  "area_km2_ci95": {**area_dict()["area_km2_ci95"], "deforestation": 0.6158}}))
    assert "2.1 ± 0.6" in small  # digits follow the magnitude
    # pixel columns of every class without decimals, even from an old report with float counts
    old = {**area_dict(), "mapped_area_pixels": {k: float(v) for k, v in area_dict()["mapped_area_pixels"].items()}}
    for r in re.findall(r"<tr><td>[a-z-]+</td>(.*?)</tr>", "".join(area_section(old))):
        px = re.findall(r"<td>(.*?)</td>", r)[3:5]
        assert all(re.fullmatch(r"[\d,]+( ± [\d,]+)?", c) for c in px), px


def test_area_section_names_a_frame_and_uninterpretable_units() -> None:
    html = "".join(area_section(area_dict(frame="test_blocks", frame_pixels=12345, uninterpretable_units=3)))
    assert "only inside the spatial test blocks" in html and "12,345 mapped pixels" in html
    assert "assumed to hold" in html and "3 sample unit(s) had no reference class" in html
    labelled = "".join(area_section(area_dict(frame="labelled_test_blocks", frame_pixels=900)))
    assert "reference-labelled pixels inside the spatial test blocks" in labelled and "900 mapped pixels" in labelled
    assert "inside the frame &#x27;my_mask&#x27;" in "".join(area_section(area_dict(frame="my_mask")))


def test_area_section_shows_the_reason_when_unavailable() -> None:
    reason = "Class 'water' has 0 sample unit(s) with a reference class of 4 drawn; label these units."
    html = "".join(area_section({"available": False, "reason": reason, "frame": "test_blocks", "sample_size": 4}))
    assert "No area-adjusted estimate" in html and "Class &#x27;water&#x27; has 0 sample unit(s)" in html
    assert "<table>" not in html
    assert area_section(None) == []


def magenta_pixels(png: bytes) -> int:
    rgb = mpimg.imread(io.BytesIO(png))[..., :3]
    return int(((rgb[..., 0] > 0.85) & (rgb[..., 1] < 0.3) & (rgb[..., 2] > 0.85)).sum())


def test_map_figure_outlines_the_test_blocks() -> None:
    cmap = np.ones((64, 64), np.uint8)
    cmap[:, 32:] = 2
    mask = np.zeros(cmap.shape, bool)
    mask[8:24, 8:24] = True
    plain = figures.class_map_png(cmap, [1, 2], ["forest", "crops"], ["#1b7837", "#e6c34a"], title="t")
    outlined = figures.class_map_png(cmap, [1, 2], ["forest", "crops"], ["#1b7837", "#e6c34a"], title="t",
                                     outline=mask)
    assert magenta_pixels(plain) == 0
    assert magenta_pixels(outlined) > 100  # the block's edges (16 px of map = ~80 px of image per side)


def world(tmp: Path) -> tuple[Path, Path]:
    cmap = np.ones((40, 50), np.uint8)
    cmap[:, 25:] = 2
    map_path = tmp / "maps" / "m" / "classes.tif"
    map_path.parent.mkdir(parents=True)
    write_class_cog(cmap, map_path, crs="EPSG:32649", transform=T, class_table=CLASSES)
    cube = xr.Dataset({"valid_fraction": (("time",), np.ones(2, np.float32))},
                      coords={"time": np.array(["2021-03-01", "2021-03-17"], dtype="datetime64[ns]"),
                              "item_ids": (("time",), ["a", "b"])})
    cube.to_zarr(tmp / "cube.zarr")
    return map_path, tmp / "cube.zarr"


def accuracy(design: dict | None) -> dict:
    out = {"overall_accuracy": 0.9, "kappa": 0.8, "f1_weighted": 0.9, "quantity_disagreement": 0.05,
           "allocation_disagreement": 0.05, "classes": ["forest", "crops"], "confusion_matrix": [[5, 1], [0, 4]],
           "per_class": {"forest": {"precision": 1.0, "recall": 0.83, "f1": 0.91, "support": 6000},
                         "crops": {"precision": 0.8, "recall": 1.0, "f1": 0.89, "support": 3000}},
           "map_date": "2021-03-17", "evaluated_pixels": 9000}
    return out if design is None else {**out, "design": design}


def test_write_map_report_with_design_and_test_blocks(tmp_path: Path) -> None:
    map_path, cube_path = world(tmp_path)
    mask = np.zeros((40, 50), bool)
    mask[5:20, 5:20] = True
    out = write_map_report(tmp_path / "report.html", report=accuracy(BLOCKS), map_path=map_path, cube_path=cube_path,
                       model_dir=None, table=TABLE, test_mask=mask)
    html = out.read_text()
    assert "Accuracy measured on 9,000 reference pixels in 12 test blocks of 32 x 32 px" in html
    assert html.index("Accuracy measured on") < html.index("<img")  # at the top
    assert "test blocks (never used for training)" in html and "map with the test blocks outlined" in html
    assert "Reference pixels evaluated: 9,000" in html and "<td>6,000</td>" in html
    paper = write_map_report(tmp_path / "paper.html", report=accuracy(PAPER), map_path=map_path, cube_path=cube_path,
                         model_dir=None, table=TABLE).read_text()
    assert 'class="design warning"' in paper and "as in the paper" in paper
    assert "never used for training" not in paper
    with pytest.raises(GridError, match="test_mask"):
        write_map_report(tmp_path / "bad.html", report=accuracy(BLOCKS), map_path=map_path, cube_path=cube_path,
                     model_dir=None, table=TABLE, test_mask=mask[:10])
