"""The tiny demo workflow tiled end to end (runtime.tiling.tile_size) with the product's defaults (monthly
composites, the map of 2021): tile rules as wildcards, tile composites on the AOI's time grid, one
mosaic map per AOI at the untiled paths, equal to what the untiled stages make on the same AOI.
The per-date protocol (cube.period null) is tiled the same way (tests/test_tiling.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import yaml
from rio_cogeo.cogeo import cog_validate
from conftest import PREFETCH, Prefetch, period_config, prefetched, snakemake, snakemake_cmd


def tiled_config() -> dict:
    config = period_config()  # a 61 x 61 px AOI: 2 x 2 tiles of 32 px; 12 monthly steps
    config["runtime"]["tiling"] = {"tile_size": 32, "overlap": None}
    return config


def _tiled_maps(factory: pytest.TempPathFactory) -> Prefetch:
    workdir = factory.mktemp("tiled")
    (workdir / "config.yaml").write_text(yaml.safe_dump(tiled_config(), sort_keys=False))
    return Prefetch("tiled_run", workdir, [snakemake_cmd(workdir, "maps")])


PREFETCH.update(tiled_run=_tiled_maps)


@pytest.fixture(scope="session")
def tiled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`maps` of the tiled tiny period demo (conftest.Prefetch: started in the background when the
    session starts). Read only."""
    workdir, proc = prefetched("tiled_run", tmp_path_factory)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir


@pytest.mark.workflow
def test_tiled_workflow_builds_one_mosaic_map_per_aoi(tiled_run: Path) -> None:
    aoi = tiled_run / "results" / "mini"
    plan = json.loads((aoi / "tiles" / "plan.json").read_text())
    ids = [t["id"] for t in plan["layout"]["tiles"]]
    assert ids == ["r0c0", "r0c1", "r1c0", "r1c1"] and plan["layout"]["overlap"] == 16  # 8 + ConvLSTM t=4 radius 5 -> 16
    assert plan["time_grid"]["period"] == "1MS" and len(plan["dates"]) == 12
    for tile in ids:
        for store in ("cube.zarr", "composite.zarr", "features.zarr"):
            assert (aoi / "tiles" / tile / store).is_dir(), (tile, store)
        assert (tiled_run / "logs" / "predict_tile_map" / "mini" / tile / "semi_convlstm.log").is_file()
    assert not (aoi / "cube.zarr").exists() and not (aoi / "composite.zarr").exists()  # no whole-AOI series
    maps = aoi / "maps" / "semi_convlstm"
    for name in ("classes.tif", "probabilities.tif", "confidence.tif", "valid_count.tif"):
        valid, errors, _ = cog_validate(str(maps / name))
        assert valid, (name, errors)
    with rasterio.open(maps / "classes.tif") as src:
        assert (src.height, src.width) == tuple(plan["layout"]["shape"])
        assert list(src.transform)[:6] == plan["transform"]
        assert src.colormap(1)[1][:3] == (0xE6, 0xC3, 0x4A)
    assert "<CategoryNames>" in (maps / "classes.tif.aux.xml").read_text()
    accuracy = json.loads((aoi / "reports" / "semi_convlstm" / "accuracy.json").read_text())
    assert 0 < accuracy["overall_accuracy"] <= 1
    assert accuracy["map_period"] == {"start": "2021-01-01", "end": "2021-12-31"} and accuracy["map_date"] == "2021-12-01"
    proc = snakemake(tiled_run, "-n", "maps")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr
    assert not list((tiled_run / "results").rglob(".tmp-*"))


@pytest.mark.workflow
def test_tiled_outputs_equal_the_untiled_stages(tiled_run: Path, tmp_path: Path) -> None:
    """The untiled cube, composite, features and prediction of the same AOI (stages run here) equal
    the tiled run's grid store, features mosaic and mosaic map."""
    from pipeline import composite as composite_stage
    from pipeline import cube as cube_stage
    from pipeline.config import check_config
    from pipeline.enrich import FeatureOptions
    from pipeline.features import run_features
    from pipeline.plan.config_moves import flat_section
    from pipeline.predict import PredictOptions, run_predict

    config = check_config(yaml.safe_load((tiled_run / "config.yaml").read_text()))
    aoi = tiled_run / "results" / "mini"
    assert cube_stage.main(["--items", str(aoi / "items.json"), "--name", "mini",
                            "--aoi", json.dumps(config["aois"]["mini"]),
                            "--options", json.dumps(flat_section(config, "cube")),
                            "--sensor", json.dumps(config["sensor"]),
                            "--catalog", json.dumps(flat_section(config, "catalog")),
                            "--out", str(tmp_path / "cube.zarr")]) == 0
    assert composite_stage.main(["--cube", str(tmp_path / "cube.zarr"), "--aoi", json.dumps(config["aois"]["mini"]),
                                 "--options", json.dumps({k: config["cube"][k] for k in ("period", "composite", "fill")}),
                                 "--out", str(tmp_path / "composite.zarr")]) == 0
    cube, grid = xr.open_zarr(tmp_path / "composite.zarr"), xr.open_zarr(aoi / "tiles" / "grid.zarr")
    np.testing.assert_array_equal(grid["valid"].values, cube["valid"].values)
    np.testing.assert_array_equal(grid["valid_fraction"].values, cube["valid_fraction"].values)
    np.testing.assert_array_equal(grid["item_ids"].values, cube["item_ids"].values)
    assert list(grid.attrs["transform"]) == list(cube.attrs["transform"])
    assert grid.attrs["time_grid"] == cube.attrs["time_grid"]

    run_features(tmp_path / "composite.zarr", tmp_path / "features.zarr",
                 options=FeatureOptions.from_mapping(flat_section(config, "features")))
    ref, got = xr.open_zarr(tmp_path / "features.zarr"), xr.open_zarr(aoi / "features.zarr")
    assert ref.sizes == got.sizes
    np.testing.assert_array_equal(got["features"].values, ref["features"].values)
    np.testing.assert_array_equal(got["valid"].values, ref["valid"].values)

    model = aoi / "models" / "semi_convlstm"
    out = run_predict(tmp_path / "features.zarr", model, tmp_path / "maps",
                      PredictOptions.from_options(flat_section(config, "predict")), name="mini")
    for name in ("classes.tif", "probabilities.tif", "confidence.tif", "valid_count.tif"):
        with rasterio.open(out / name) as a, rasterio.open(aoi / "maps" / "semi_convlstm" / name) as b:
            x, y = a.read().astype(int), b.read().astype(int)
        if name == "classes.tif" or name == "valid_count.tif":
            np.testing.assert_array_equal(y, x, err_msg=name)
        else:
            assert np.abs(x - y).max() <= 1, name
    assert json.loads((out / "item.json").read_text()) == json.loads(
        (aoi / "maps" / "semi_convlstm" / "item.json").read_text())
