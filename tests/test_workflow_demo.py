"""The workflow end to end on a small embedded demo: `snakemake maps` builds every stage's
output, a second run does nothing, and a changed parameter reruns only what depends on it; the
product's defaults (monthly composites) map a period. Both runs are the session's
(tests/conftest.py ``demo_run``, shared with the reliability tests, and ``period_run``)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import (
    REPO,
    period_config,
    run_together,
    snakemake,  # noqa: F401 - tests/test_tiling_workflow.py imports it from here
    snakemake_cmd,
)


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
    """Dry runs of the shared run (it stays as it is), started together: as it is, then with a cube,
    a training and a voting parameter changed (``--configfile``), then with the training stage's
    code changed (a copy of the repository whose pipeline/training/losses.py differs, imported
    first through PYTHONPATH)."""
    changes = {"cube": ("cube", "min_valid_fraction", 0.05), "train": ("train", "lr", 0.002),
               "voting": ("voting", "method", "probability")}
    configfiles = {}
    for name, (section, key, value) in changes.items():
        config = yaml.safe_load((demo_run / "config.yaml").read_text())
        config[section][key] = value
        configfiles[name] = tmp_path / f"{name}.yaml"
        configfiles[name].write_text(yaml.safe_dump(config, sort_keys=False))
    repo = tmp_path / "repo"
    for part in ("pipeline", "workflow", "envs"):
        shutil.copytree(REPO / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "Snakefile", repo / "Snakefile")
    losses = repo / "pipeline" / "training" / "losses.py"
    losses.write_text(losses.read_text() + "\n_EDITED = True  # a new version of the training code\n")
    edited = ["env", f"PYTHONPATH={repo}", sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"),
              "--directory", str(demo_run), "--cores", "2", "-n", "maps"]
    same, cube, train, voting, code = run_together(
        snakemake_cmd(demo_run, "-n", "maps"),
        *(snakemake_cmd(demo_run, "-n", "maps", "--configfile", str(path)) for path in configfiles.values()),
        edited, cwd=tmp_path)  # not the repository: `python -m` would import its pipeline first
    assert same.returncode == 0 and "Nothing to be done" in same.stdout + same.stderr

    # the training code changed: training and what depends on it rerun, nothing upstream
    out = code.stdout + code.stderr
    assert code.returncode == 0, out
    for rule in ("train_model", "predict_map", "evaluate_map", "vote_map"):
        assert rule in out, rule
    for rule in ("build_cube", "build_features", "build_labels", "search_stac", "generate_demo"):
        assert rule not in out, rule
    assert "Params have changed since last execution" in out

    out = cube.stdout + cube.stderr
    assert cube.returncode == 0, out
    assert "build_cube" in out and "build_features" in out
    assert "search_stac" not in out and "generate_demo" not in out

    out = train.stdout + train.stderr
    assert train.returncode == 0, out
    for rule in ("train_model", "predict_map", "evaluate_map"):
        assert rule in out
    for rule in ("build_cube", "build_features", "build_labels", "search_stac"):
        assert rule not in out

    # the voting is a stage of its own: changing it neither repredicts nor retrains
    out = voting.stdout + voting.stderr
    assert voting.returncode == 0, out
    assert "vote_map" in out and "evaluate_voted_map" in out
    for rule in ("train_model", "predict_map", "rule evaluate_map"):
        assert rule not in out


@pytest.mark.workflow
def test_period_map_from_monthly_composites(period_run: Path) -> None:
    """`maps` with the product's defaults (tests/conftest.py ``period_run``): the cube is composited
    into 12 monthly steps, the models see a clear channel, static labels label the steps of 2021
    only, and the map and its report are those of the period 2021, scored on the spatial test blocks."""
    import json

    import rasterio

    config = period_config()
    assert config["cube"]["period"] == "1MS" and config["labels"]["static"] and config["predict"]["target"] == "period"
    assert yaml.safe_load((period_run / "config.yaml").read_text()) == yaml.safe_load(
        yaml.safe_dump(config, sort_keys=False))
    aoi = period_run / "results" / "mini"
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
