"""The workflow end to end on a small embedded demo: `snakemake maps` builds every stage's
output, a second run does nothing, and a changed parameter reruns only what depends on it.
The demo run is the session's (tests/conftest.py ``demo_run``), shared with the reliability tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import small_config, snakemake

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.workflow
def test_maps_builds_the_demo(demo_run: Path) -> None:
    items = demo_run / "results" / "mini" / "items.json"
    assert items.is_file()
    cube = xr.open_zarr(demo_run / "results" / "mini" / "cube.zarr")
    assert cube.attrs["crs"] == "EPSG:32649"
    assert 8 <= cube.sizes["time"] <= 10 and cube.sizes["band"] == 7
    assert 50 <= cube.sizes["y"] <= 64 and 50 <= cube.sizes["x"] <= 64
    assert (demo_run / "logs" / "build_cube" / "mini.log").is_file()
    features = xr.open_zarr(demo_run / "results" / "mini" / "features.zarr")
    assert features.sizes["channel"] == 64 + 7 and features.sizes["time"] == cube.sizes["time"]
    assert features.attrs["features_stem"] == "gabor"
    labels = xr.open_zarr(demo_run / "results" / "mini" / "labels.zarr")
    assert labels.sizes["time"] == cube.sizes["time"] and int((labels.labels > 0).sum()) > 0


@pytest.mark.workflow
def test_maps_are_cogs_with_reports(demo_run: Path) -> None:
    import json

    import rasterio
    from rio_cogeo.cogeo import cog_validate

    maps = demo_run / "results" / "mini" / "maps" / "semi_convlstm"
    for name in ("classes.tif", "probabilities.tif", "confidence.tif", "valid_count.tif"):
        valid, errors, _ = cog_validate(str(maps / name))
        assert valid, (name, errors)
    with rasterio.open(maps / "classes.tif") as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 0 and src.crs.to_epsg() == 32649
        assert src.colormap(1)[1][:3] == (0xE6, 0xC3, 0x4A)
        classes = src.read(1)
    assert set(np.unique(classes)) <= {0, 1, 2, 3, 4, 5, 6} and (classes > 0).mean() > 0.5
    assert (maps / "classes.qml").read_text().count("paletteEntry") == 6
    item = json.loads((maps / "item.json").read_text())
    assert [c["value"] for c in item["assets"]["classes"]["classification:classes"]] == [1, 2, 3, 4, 5, 6]
    report = demo_run / "results" / "mini" / "reports" / "semi_convlstm"
    accuracy = json.loads((report / "accuracy.json").read_text())
    for key in ("overall_accuracy", "kappa", "f1_weighted", "per_class", "confusion_matrix", "classes",
                "quantity_disagreement", "allocation_disagreement", "area_adjusted"):
        assert key in accuracy
    assert accuracy["overall_accuracy"] + 0 == pytest.approx(
        1 - accuracy["quantity_disagreement"] - accuracy["allocation_disagreement"])
    assert (report / "report.html").read_text().count("data:image/png;base64") >= 3
    assert (report / "sample.gpkg").is_file()
    # voting.method (demo: majority): the voted map, a COG with the same colour table whose every
    # class already occurs in the map, evaluated against the same reference as the map
    with rasterio.open(maps / "voted" / "classes.tif") as src:
        assert src.colormap(1)[1][:3] == (0xE6, 0xC3, 0x4A) and list(src.transform) == list(
            rasterio.open(maps / "classes.tif").transform)
        voted = src.read(1)
    assert cog_validate(str(maps / "voted" / "classes.tif"))[0]
    assert set(np.unique(voted)) <= set(np.unique(classes)) and ((voted > 0) == (classes > 0)).all()
    voted_accuracy = json.loads((report / "voted" / "accuracy.json").read_text())
    assert voted_accuracy["evaluated_pixels"] == accuracy["evaluated_pixels"]
    assert (maps / "voted" / "segments.gpkg").is_file() and (report / "voted" / "report.html").is_file()
    assert not list((demo_run / "results").rglob(".tmp-*"))


@pytest.mark.workflow
def test_second_run_does_nothing_and_param_change_reruns_downstream_only(demo_run: Path, tmp_path: Path) -> None:
    proc = snakemake(demo_run, "-n", "maps")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr

    config = yaml.safe_load((demo_run / "config.yaml").read_text())
    config["cube"]["min_valid_fraction"] = 0.05
    changed = tmp_path / "changed.yaml"  # dry runs only: the shared run stays as it is
    changed.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(demo_run, "-n", "maps", "--configfile", str(changed))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "build_cube" in out and "build_features" in out
    assert "search_stac" not in out and "generate_demo" not in out

    config = yaml.safe_load((demo_run / "config.yaml").read_text())
    config["train"]["lr"] = 0.002
    changed.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(demo_run, "-n", "maps", "--configfile", str(changed))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for rule in ("train_model", "predict_map", "evaluate_map"):
        assert rule in out
    for rule in ("build_cube", "build_features", "build_labels", "search_stac"):
        assert rule not in out

    # the voting is a stage of its own: changing it neither repredicts nor retrains
    config = yaml.safe_load((demo_run / "config.yaml").read_text())
    config["voting"]["method"] = "probability"
    changed.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(demo_run, "-n", "maps", "--configfile", str(changed))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "vote_map" in out and "evaluate_voted_map" in out
    for rule in ("train_model", "predict_map", "rule evaluate_map"):
        assert rule not in out


def period_config() -> dict:
    """The small demo as the product runs it: monthly composites, one land-cover raster, the map of 2021."""
    config = small_config()
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    for key in ("cube", "labels", "predict"):
        config[key] = {**config[key], **base[key]}
    config["classes"] = base["classes"]
    return config


@pytest.mark.workflow
def test_period_map_from_monthly_composites(tmp_path: Path) -> None:
    """`maps` with the product's defaults: the cube is composited into 12 monthly steps, the models
    see a clear channel, static labels label the steps of 2021 only, and the map and its report
    are those of the period 2021, scored on the spatial test blocks."""
    import json

    import rasterio

    config = period_config()
    assert config["cube"]["period"] == "1MS" and config["labels"]["static"] and config["predict"]["target"] == "period"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(tmp_path, "maps")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    aoi = tmp_path / "results" / "mini"
    grid = xr.open_zarr(aoi / "composite.zarr")
    assert grid.sizes["time"] == 12 and str(grid.time.values[0])[:10] == "2021-01-01"
    features = xr.open_zarr(aoi / "features.zarr")
    assert features.sizes["time"] == 12 and str(features.channel.values[-1]) == "clear"
    clear = features["features"].sel(channel="clear").values.astype(bool)
    assert np.array_equal(clear, features["valid"].values)
    labels = xr.open_zarr(aoi / "labels.zarr")
    per_step = (labels["reference"].values > 0).sum(axis=(1, 2))
    assert (per_step == per_step[0]).all() and per_step[0] > 0  # the static raster on every step of 2021
    assert set(np.unique(labels["reference"].values)) <= {0, 1, 2, 3, 4}  # no cloud or shadow class
    item = json.loads((aoi / "maps" / "semi_convlstm" / "item.json").read_text())
    props = item["properties"]
    assert props["start_datetime"][:10] == "2021-01-01" and props["end_datetime"][:10] == "2021-12-31"
    assert props["pipeline:target"] == "period" and props["pipeline:map_step"] == "2021-12-01"
    with rasterio.open(aoi / "maps" / "semi_convlstm" / "classes.tif") as src:
        assert set(np.unique(src.read(1))) <= {0, 1, 2, 3, 4}
    acc = json.loads((aoi / "reports" / "semi_convlstm" / "accuracy.json").read_text())
    assert acc["map_period"] == {"start": "2021-01-01", "end": "2021-12-31"} and acc["map_date"] == "2021-12-01"
    assert acc["design"]["kind"] == "spatial_blocks" and acc["evaluated_pixels"] == acc["design"]["test_pixels"] > 0
    card = json.loads((aoi / "models" / "semi_convlstm" / "model_card.json").read_text())
    assert card["options"]["holdout_last_date"] is False
    html = (aoi / "reports" / "semi_convlstm" / "report.html").read_text()
    assert "Land cover of the period 2021-01-01 .. 2021-12-31" in html and "1MS median composites" in html
