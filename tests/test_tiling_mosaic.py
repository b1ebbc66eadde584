"""Per-tile predictions of a tiled AOI mosaicked into one map folder (pipeline.predict --tile,
pipeline.tiling.mosaic) equal the untiled prediction and are valid COGs with the same styling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
from rio_cogeo.cogeo import cog_validate
from test_predict_stage import ATTRS, CLASSES, dataset

from pipeline.enrich import PcaFit
from pipeline.errors import ConfigError
from pipeline.predict import PredictOptions, run_predict
from pipeline.raster.zarr_io import write_zarr_atomic
from pipeline.tiling.layout import FEATURE_HALO, tile_layout
from pipeline.tiling.mosaic import run_mosaic_map
from pipeline.tiling.plan import TilePlan
from pipeline.training.trainer import train_model

RASTERS = ("classes.tif", "probabilities.tif", "confidence.tif", "valid_count.tif")


def tile_features(features: xr.Dataset, plan: TilePlan, tile_id: str) -> xr.Dataset:
    """A tile's features store: its window, garbage within the feature halo of window edges inside
    the AOI (where a tile's stem lacks the neighbouring pixels), the window's transform."""
    tile = plan.layout.tile(tile_id)
    part = features.isel(y=tile.window.slices[0], x=tile.window.slices[1]).load()
    values = part["features"].values.copy()
    h, w = plan.layout.shape
    if tile.window.y0 > 0:
        values[..., :FEATURE_HALO, :] = 9
    if tile.window.y1 < h:
        values[..., -FEATURE_HALO:, :] = 9
    if tile.window.x0 > 0:
        values[..., :FEATURE_HALO] = 9
    if tile.window.x1 < w:
        values[..., -FEATURE_HALO:] = 9
    part["features"].values = values
    t = ATTRS["transform"]
    part.attrs = {"crs": ATTRS["crs"], "transform": [t[0], 0.0, t[2] + t[0] * tile.window.x0, 0.0, t[4],
                                                     t[5] + t[4] * tile.window.y0]}
    return part


@pytest.fixture(scope="module")
def untiled(tmp_path_factory) -> tuple[Path, Path, Path, xr.Dataset]:
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("mosaic")
    f, lab = dataset(n_times=5, size=(45, 52), seed=3)
    model_dir = tmp / "models" / "convlstm"
    train_model(f, lab, model_dir, {"classes": CLASSES, "model": "convlstm", "time_steps": 3, "hidden": 6,
                                    "patch": 12, "stride": 6, "epochs": 2, "val_fraction": 0.25, "block_size": 12,
                                    "buffer": 0, "device": "cpu", "lr": 0.01, "seed": 0})
    fz = write_zarr_atomic(f, tmp / "features.zarr")
    out = run_predict(fz, model_dir, tmp / "maps" / "convlstm", PredictOptions(tile=32, device="cpu"), name="aoi")
    return tmp, model_dir, out, f


def make_plan(tmp: Path, features: xr.Dataset, *, tile_size: int, overlap: int) -> tuple[TilePlan, Path]:
    n_t = features.sizes["time"]
    pca = PcaFit(np.zeros((n_t, 3)), np.zeros((n_t, 1, 3)), np.ones((n_t, 1)), np.ones((n_t, 1)),
                 np.ones(n_t, np.int64), (), "global")
    layout = tile_layout((features.sizes["y"], features.sizes["x"]), tile_size=tile_size, overlap=overlap)
    plan = TilePlan(layout, features.time.values, [], pca, ATTRS["crs"], list(ATTRS["transform"]))
    path = tmp / f"plan-{tile_size}-{overlap}.json"
    path.write_text(json.dumps(plan.to_dict()))
    return plan, path


def test_mosaic_of_tile_predictions_equals_the_untiled_map(untiled, tmp_path: Path) -> None:
    _, model_dir, ref_dir, features = untiled
    # convlstm t=3, k=3: receptive radius 4 -> the overlap needs 8 + 4 = 12 px
    plan, plan_path = make_plan(tmp_path, features, tile_size=20, overlap=12)
    assert plan.layout.grid == (3, 3)
    tile_dirs = []
    for tile in plan.layout.tiles:
        store = write_zarr_atomic(tile_features(features, plan, tile.id), tmp_path / tile.id / "features.zarr")
        tile_dirs.append(run_predict(store, model_dir, tmp_path / tile.id / "maps", PredictOptions(tile=16, device="cpu"),
                                     name="aoi", plan=plan, tile=tile.id))
        with rasterio.open(tile_dirs[-1] / "classes.tif") as src:  # the core only, on the AOI grid
            assert (src.height, src.width) == tile.core.shape
            assert src.transform.c == ATTRS["transform"][2] + 30.0 * tile.core.x0
    out = run_mosaic_map(tile_dirs, plan_path, model_dir, tmp_path / "mosaic")

    for name in RASTERS:
        valid, errors, _ = cog_validate(str(out / name))
        assert valid, (name, errors)
        with rasterio.open(out / name) as got, rasterio.open(ref_dir / name) as ref:
            assert got.profile == ref.profile, name
            assert got.descriptions == ref.descriptions and got.units == ref.units
            assert got.overviews(1) == ref.overviews(1)
            a, b = got.read(), ref.read()
            if name == "probabilities.tif" or name == "confidence.tif":
                assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, name
            else:
                np.testing.assert_array_equal(a, b, err_msg=name)
    with rasterio.open(out / "classes.tif") as got, rasterio.open(ref_dir / "classes.tif") as ref:
        assert got.colormap(1) == ref.colormap(1)
        assert (got.read(1) == 0).sum() == 12  # the never-observed corner
    assert (out / "classes.tif.aux.xml").read_text() == (ref_dir / "classes.tif.aux.xml").read_text()
    assert (out / "classes.qml").read_text() == (ref_dir / "classes.qml").read_text()
    got_item, ref_item = (json.loads((d / "item.json").read_text()) for d in (out, ref_dir))
    assert got_item == ref_item
    assert not list(out.glob(".tmp-*"))


def test_too_small_overlap_is_refused(untiled, tmp_path: Path) -> None:
    _, model_dir, _, features = untiled
    plan, _ = make_plan(tmp_path, features, tile_size=20, overlap=8)
    store = write_zarr_atomic(tile_features(features, plan, "r1c1"), tmp_path / "features.zarr")
    with pytest.raises(ConfigError, match="raise runtime.tiling.overlap to 12"):
        run_predict(store, model_dir, tmp_path / "maps", PredictOptions(device="cpu"), name="aoi", plan=plan,
                    tile="r1c1")
