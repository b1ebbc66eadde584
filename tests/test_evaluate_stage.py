"""Evaluation stage: accuracy of a map against the reference of its date, the Olofsson sample,
the report, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.transform import Affine

from pipeline import evaluate as evaluate_stage
from pipeline import labels as labels_stage
from pipeline.raster.cog import write_class_cog
from pipeline.raster.zarr_io import write_zarr_atomic

CLASSES = [{"id": 1, "name": "cultivated", "color": "#e6c34a"}, {"id": 2, "name": "forest", "color": "#1b7837"},
           {"id": 3, "name": "construction", "color": "#d6604d"}]
T = [30.0, 0.0, 500000.0, 0.0, -30.0, 4500000.0]
SHAPE = (40, 50)


def world(tmp: Path) -> tuple[Path, Path, np.ndarray]:
    """A cube.zarr with two dates and a folder of label rasters for both dates."""
    ny, nx = SHAPE
    times = np.array(["2021-03-01T03:00", "2021-03-17T03:00"], dtype="datetime64[ns]")
    cube = xr.Dataset(
        {"valid": (("time", "y", "x"), np.ones((2, ny, nx), bool)),
         "valid_fraction": (("time",), np.ones(2, np.float32)),
         "item_ids": (("time",), ["a", "b"])},
        coords={"time": times, "y": 4500000 - 15 - 30 * np.arange(ny), "x": 500015 + 30 * np.arange(nx)},
        attrs={"crs": "EPSG:32649", "transform": T})
    cube = cube.set_coords("item_ids")
    cube_path = write_zarr_atomic(cube, tmp / "cube.zarr")
    labels = tmp / "labels"
    labels.mkdir()
    rng = np.random.default_rng(1)
    truth = rng.choice([1, 2, 3], size=SHAPE, p=[0.6, 0.3, 0.1]).astype(np.uint8)
    for day, arr in (("2021-03-01", truth[::-1]), ("2021-03-17", truth)):
        with rasterio.open(labels / f"{day}.tif", "w", driver="GTiff", width=nx, height=ny, count=1, dtype="uint8",
                           crs="EPSG:32649", transform=Affine(*T), nodata=0) as dst:
            dst.write(arr, 1)
    return cube_path, labels, truth


def label_store(tmp: Path, cube: Path, labels: Path, **design: object) -> Path:
    """labels.zarr of the label folder through the labels stage (default: the paper design)."""
    out = tmp / "labels.zarr"
    design = {"design": "paper", "folds": 2, **design}
    assert labels_stage.main(["--cube", str(cube), "--out", str(out), "--classes", json.dumps(CLASSES),
                              "--options", json.dumps({"source": str(labels)}), "--design", json.dumps(design)]) == 0
    return out


def run(tmp: Path, map_path: Path, cube: Path, labels: Path, options: dict, **design: object) -> int:
    store = label_store(tmp, cube, labels, **design)
    return evaluate_stage.main(["--map", str(map_path), "--cube", str(cube), "--labels", str(store),
                                "--classes", json.dumps(CLASSES), "--options", json.dumps(options),
                                "--out", str(tmp / "report")])


def test_accuracy_of_the_last_date(tmp_path: Path) -> None:
    cube, labels, truth = world(tmp_path)
    mapped = truth.copy()
    mapped[:10, :] = np.where(mapped[:10, :] == 1, 2, mapped[:10, :])  # known errors: cultivated -> forest
    mapped[-2:, :] = 0  # nodata rows are not counted
    write_class_cog(mapped, tmp_path / "classes.tif", crs="EPSG:32649", transform=T, class_table=CLASSES)
    assert run(tmp_path, tmp_path / "classes.tif", cube, labels, {"min_per_stratum": 20, "sample_size": 120}) == 0
    acc = json.loads((tmp_path / "report" / "accuracy.json").read_text())
    counted = mapped > 0
    expected_oa = float((mapped[counted] == truth[counted]).mean())
    assert acc["overall_accuracy"] == pytest.approx(expected_oa)
    assert acc["evaluated_pixels"] == int(counted.sum())
    assert acc["map_date"] == "2021-03-17"
    cm = np.array(acc["confusion_matrix"])
    assert cm[0, 1] == int(((truth == 1) & (mapped == 2)).sum())  # rows = reference, columns = map
    area = acc["area_adjusted"]
    assert area["design"] == "stratified_random" and area["sample_size"] == 120
    assert area["overall_accuracy"] == pytest.approx(expected_oa, abs=0.12)
    assert sum(v for v in area["area_pixels"].values()) == pytest.approx(counted.sum())
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Area-adjusted" in html and html.count("data:image/png;base64") >= 3


def test_labelled_sample_file_is_read_back(tmp_path: Path) -> None:
    import geopandas as gpd

    cube, labels, truth = world(tmp_path)
    write_class_cog(truth, tmp_path / "classes.tif", crs="EPSG:32649", transform=T, class_table=CLASSES)
    assert run(tmp_path, tmp_path / "classes.tif", cube, labels, {"sample_size": 60, "min_per_stratum": 10}) == 0
    sample = gpd.read_file(tmp_path / "report" / "sample.gpkg")
    assert set(sample.columns) >= {"row", "col", "map_class", "reference", "geometry"}
    # an interpreter disagrees with the map on every 'forest' unit: user's accuracy of forest drops to 0
    sample["reference"] = np.where(sample["map_class"] == "forest", "construction", sample["map_class"])
    sample.to_file(tmp_path / "labelled.gpkg", driver="GPKG")
    opts = {"sample_size": 60, "min_per_stratum": 10, "sample_reference": "file", "sample_file": str(tmp_path / "labelled.gpkg")}
    assert run(tmp_path, tmp_path / "classes.tif", cube, labels, opts) == 0
    area = json.loads((tmp_path / "report" / "accuracy.json").read_text())["area_adjusted"]
    assert area["users_accuracy"]["forest"] == 0.0 and area["users_accuracy"]["cultivated"] == 1.0


def test_map_on_another_grid_is_refused(tmp_path: Path, caplog) -> None:
    cube, labels, truth = world(tmp_path)
    shifted = [30.0, 0.0, 500030.0, 0.0, -30.0, 4500000.0]
    write_class_cog(truth, tmp_path / "classes.tif", crs="EPSG:32649", transform=shifted, class_table=CLASSES)
    assert run(tmp_path, tmp_path / "classes.tif", cube, labels, {}) == 2
    assert "differs from the cube" in caplog.text and not (tmp_path / "report" / "accuracy.json").exists()


def test_missing_reference_for_the_map_date(tmp_path: Path, caplog) -> None:
    cube, labels, truth = world(tmp_path)
    (labels / "2021-03-17.tif").unlink()
    write_class_cog(truth, tmp_path / "classes.tif", crs="EPSG:32649", transform=T, class_table=CLASSES)
    assert run(tmp_path, tmp_path / "classes.tif", cube, labels, {}) == 2
    assert "no reference labels for the map date 2021-03-17" in caplog.text


def test_sample_file_option_needs_a_file(tmp_path: Path, caplog) -> None:
    cube, labels, truth = world(tmp_path)
    write_class_cog(truth, tmp_path / "classes.tif", crs="EPSG:32649", transform=T, class_table=CLASSES)
    assert run(tmp_path, tmp_path / "classes.tif", cube, labels, {"sample_reference": "file"}) == 2
    assert "sample_file is not set" in caplog.text


def test_spatial_blocks_score_the_test_blocks_only(tmp_path: Path) -> None:
    """With the spatial design the metrics are those of the test blocks stored in labels.zarr
    (computed independently here from the stored mask), and accuracy.json names the design."""
    cube, labels, truth = world(tmp_path)
    mapped = truth.copy()
    mapped[:, :25] = np.where(mapped[:, :25] == 1, 2, mapped[:, :25])  # errors in the western half only
    write_class_cog(mapped, tmp_path / "classes.tif", crs="EPSG:32649", transform=T, class_table=CLASSES)
    design = {"design": "spatial_blocks", "block_size": 10, "test_share": 0.3, "buffer": 2, "seed": 3}
    assert run(tmp_path, tmp_path / "classes.tif", cube, labels, {"sample_size": 60, "min_per_stratum": 5},
               **design) == 0
    acc = json.loads((tmp_path / "report" / "accuracy.json").read_text())
    split = xr.open_zarr(tmp_path / "labels.zarr")["split"].values
    test = split == 1
    assert 0 < test.sum() < test.size and (split == 2).any()
    assert acc["overall_accuracy"] == pytest.approx(float((mapped[test] == truth[test]).mean()))
    assert acc["evaluated_pixels"] == int(test.sum())
    d = acc["design"]
    assert d["kind"] == "spatial_blocks" and d["block_size"] == 10 and d["buffer_px"] == 2
    assert d["test_pixels"] == int(test.sum()) and d["labelled_pixels"] == truth.size
    assert d["test_blocks"] == len({(r // 10, c // 10) for r, c in zip(*np.nonzero(test), strict=True)})
    area = acc["area_adjusted"]
    assert area["available"] and area["frame"] == "labelled_test_blocks"
    sample = __import__("geopandas").read_file(tmp_path / "report" / "sample.gpkg")
    assert test[sample["row"], sample["col"]].all()  # the sample never touches a training location
    html = (tmp_path / "report" / "report.html").read_text()
    assert "test blocks" in html and f"{d['test_blocks']} test blocks" in html


def test_cross_validation_fold_is_scored_on_its_blocks(tmp_path: Path) -> None:
    cube, labels, truth = world(tmp_path)
    write_class_cog(truth, tmp_path / "classes.tif", crs="EPSG:32649", transform=T, class_table=CLASSES)
    store = label_store(tmp_path, cube, labels, design="spatial_blocks", block_size=10, folds=3, buffer=1)
    fold = xr.open_zarr(store)["fold"].values
    for k in range(3):
        out = tmp_path / f"fold{k}"
        assert evaluate_stage.main(["--map", str(tmp_path / "classes.tif"), "--cube", str(cube), "--labels", str(store),
                                    "--classes", json.dumps(CLASSES), "--options", '{"sample_reference": "none"}',
                                    "--out", str(out), "--fold", str(k)]) == 0
        acc = json.loads((out / "accuracy.json").read_text())
        assert acc["design"]["kind"] == "spatial_cv" and acc["design"]["fold"] == k
        assert acc["evaluated_pixels"] == int((fold == k).sum())
    assert evaluate_stage.main(["--map", str(tmp_path / "classes.tif"), "--cube", str(cube), "--labels", str(store),
                                "--classes", json.dumps(CLASSES), "--out", str(tmp_path / "bad"), "--fold", "3"]) == 2
    assert not (tmp_path / "bad" / "accuracy.json").exists()
