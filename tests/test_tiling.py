"""Tile layout of large AOIs (pipeline.tiling.layout), the per-AOI plan (pipeline.tiling.plan) and tile
features equal to the untiled features on the tile cores (pipeline.features --plan --tile)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from pipeline.enrich import FeatureOptions, build_features
from pipeline.enrich.compute import fit_cube_pca
from pipeline.enrich.stem import HALO
from pipeline.errors import ConfigError
from pipeline.raster.zarr_io import write_zarr_atomic
from pipeline.tiling.layout import FEATURE_HALO, TileLayout, auto_overlap, tile_layout
from pipeline.tiling.windows import Tile

BANDS = ["coastal", "blue", "green", "red", "nir08", "swir16", "swir22"]


def test_layout_ids_windows_and_cores() -> None:
    layout = tile_layout((70, 90), tile_size=32, overlap=10)
    assert layout.ids == ["r0c0", "r0c1", "r0c2", "r1c0", "r1c1", "r1c2", "r2c0", "r2c1", "r2c2"]
    assert layout.grid == (3, 3)
    t = layout.tile("r1c2")
    assert (t.core.y0, t.core.y1, t.core.x0, t.core.x1) == (32, 64, 64, 90)  # remainder at the edge
    assert (t.window.y0, t.window.y1, t.window.x0, t.window.x1) == (22, 70, 54, 90)  # clipped at the AOI edge
    assert t.core_in_window == (slice(10, 42), slice(10, 36))
    assert t.margins(layout.shape) == [10, 10]  # top, left (bottom and right windows end on the AOI edge)
    assert layout.tile("r1c1").margins(layout.shape) == [10, 10, 10]  # its window ends on the bottom edge
    corner = layout.tile("r0c0")
    assert (corner.window.y0, corner.window.x0, corner.window.y1, corner.window.x1) == (0, 0, 42, 42)
    # the cores cover the grid exactly once
    cover = np.zeros(layout.shape, int)
    for tile in layout.tiles:
        cover[tile.core.slices] += 1
        assert tile.window.y0 <= tile.core.y0 and tile.core.y1 <= tile.window.y1
    assert (cover == 1).all()
    assert TileLayout.from_dict(json.loads(json.dumps(layout.to_dict()))) == layout
    assert Tile.from_dict(t.to_dict()) == t
    with pytest.raises(ConfigError, match="r9c9"):
        layout.tile("r9c9")
    with pytest.raises(ConfigError):
        tile_layout((0, 10), tile_size=8, overlap=0)


def test_single_tile_and_auto_overlap() -> None:
    layout = tile_layout((40, 40), tile_size=64, overlap=16)
    assert layout.ids == ["r0c0"] and layout.tiles[0].core == layout.tiles[0].window
    assert FEATURE_HALO == HALO
    # ConvLSTM k=3, t=6: radius 7 -> 8 + 7 = 15 -> 16; t=20: 21 + 8 = 29 -> 32
    assert auto_overlap("semi_convlstm", {"time_steps": 6, "kernel": 3}) == 16
    assert auto_overlap("convlstm", {"time_steps": 20, "kernel": 3}) == 32
    assert auto_overlap("rf", {"time_steps": 6}) == 16  # per-pixel model: the feature halo only
    # relearning adds the first-stage halo: 8 + 7 + 7 = 22 -> 32
    assert auto_overlap("semi_convlstm_relearn_pixel", {"time_steps": 6, "kernel": 3}) == 32
    assert auto_overlap("unet", {"time_steps": 6}) % 16 == 0


def synthetic_cube(shape: tuple[int, int], dates: int, *, seed: int = 0) -> xr.Dataset:
    """Seeded cube in UTM 49N: smooth fields + noise, ~15 % invalid, date 1 mostly cloudy."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / (5 + b)) * np.cos(yy / (7 + b)) for b in range(len(BANDS))])
    refl = (0.2 + 0.1 * base[None] + 0.02 * rng.standard_normal((dates, len(BANDS), h, w))).astype(np.float32)
    valid = rng.random((dates, h, w)) > 0.15
    valid[1] = rng.random((h, w)) > 0.9  # ~10 % valid: dropped with min_valid_fraction 0.3
    refl[0, 2, 5:9, 11:14] = np.nan
    valid &= np.isfinite(refl).all(axis=1)
    t0, y0 = 685_725.0, 3_116_955.0
    return xr.Dataset(
        {"reflectance": (("time", "band", "y", "x"), refl), "valid": (("time", "y", "x"), valid),
         "aoi_mask": (("y", "x"), np.ones((h, w), bool))},
        coords={"time": (np.datetime64("2021-01-01", "D") + 16 * np.arange(dates)).astype("datetime64[ns]"),
                "band": BANDS, "y": y0 - 30.0 * np.arange(h) - 15.0, "x": t0 + 30.0 * np.arange(w) + 15.0,
                "item_ids": ("time", [f"item-{i}" for i in range(dates)])},
        attrs={"crs": "EPSG:32649", "transform": [30.0, 0.0, t0, 0.0, -30.0, y0], "skipped": []},
    )


def tile_cube(cube: xr.Dataset, tile: Tile) -> xr.Dataset:
    """What the cube stage writes for one tile (its window; every date)."""
    part = cube.isel(y=tile.window.slices[0], x=tile.window.slices[1])
    t = cube.attrs["transform"]
    part.attrs = {**cube.attrs, "transform": [t[0], 0.0, t[2] + t[0] * tile.window.x0, 0.0, t[4],
                                             t[5] + t[4] * tile.window.y0],
                  "tile": tile.id, "tile_window": tile.to_dict()["window"], "tile_core": tile.to_dict()["core"]}
    return part


def test_tile_features_equal_untiled_features_on_the_cores(tmp_path: Path) -> None:
    from pipeline.features import run_features
    from pipeline.tiling.plan import TilePlan, plan_tiles

    cube = synthetic_cube((45, 53), dates=4)  # odd sizes: the stem's odd-size upsampling
    layout = tile_layout((45, 53), tile_size=19, overlap=16)  # odd tile origins: stride-2 phase
    options = FeatureOptions(stem="gabor", pca_sample=400, chunk=16, dtype="float32", device="cpu")
    paths = []
    for tile in layout.tiles:
        paths.append(write_zarr_atomic(tile_cube(cube, tile), tmp_path / "tiles" / tile.id / "cube.zarr"))
    plan = plan_tiles(paths, layout, min_valid_fraction=0.3, features=options,
                      plan_path=tmp_path / "plan.json", grid_path=tmp_path / "grid.zarr")
    kept = cube.isel(time=[0, 2, 3])  # date 1 is below min_valid_fraction
    assert (plan.dates == kept.time.values).all()
    assert any("valid fraction" in s for s in plan.skipped)
    assert TilePlan.read(tmp_path / "plan.json").to_dict() == plan.to_dict()

    # the plan's PCA is the untiled fit (same pixel sample, drawn by AOI position)
    untiled_fit = fit_cube_pca(kept, options)
    np.testing.assert_array_equal(plan.pca.components, untiled_fit.components)
    np.testing.assert_array_equal(plan.pca.mean, untiled_fit.mean)

    grid = xr.open_zarr(tmp_path / "grid.zarr")
    np.testing.assert_array_equal(grid["valid"].values, kept["valid"].values)
    np.testing.assert_array_equal(grid["x"].values, cube["x"].values)
    assert list(grid.attrs["transform"]) == cube.attrs["transform"] and "tile" not in grid.attrs

    expected = build_features(kept, options).compute()
    for tile in layout.tiles:
        out = run_features(paths[layout.ids.index(tile.id)], tmp_path / "tiles" / tile.id / "features.zarr",
                           options=options, plan=plan, tile=tile.id)
        got = xr.open_zarr(out)
        core = got.isel(y=tile.core_in_window[0], x=tile.core_in_window[1])
        ref = expected.isel(y=tile.core.slices[0], x=tile.core.slices[1])
        np.testing.assert_allclose(core["features"].values, ref["features"].values, rtol=0, atol=2e-6,
                                   err_msg=tile.id)
        np.testing.assert_array_equal(core["valid"].values, ref["valid"].values)
        assert got.attrs["features_pca_mean"] == expected.attrs["features_pca_mean"]


def test_tile_features_mosaic_equals_untiled_store(tmp_path: Path) -> None:
    """The AOI features mosaic the train stage reads equals the untiled store (float16)."""
    from pipeline.features import run_features
    from pipeline.tiling.mosaic import run_mosaic_features
    from pipeline.tiling.plan import plan_tiles

    cube = synthetic_cube((40, 40), dates=3, seed=1)
    layout = tile_layout((40, 40), tile_size=24, overlap=16)
    options = FeatureOptions(stem="gabor", pca_sample=300, chunk=16, device="cpu")
    cubes = [write_zarr_atomic(tile_cube(cube, t), tmp_path / t.id / "cube.zarr") for t in layout.tiles]
    plan = plan_tiles(cubes, layout, min_valid_fraction=0.0, features=options,
                      plan_path=tmp_path / "plan.json", grid_path=tmp_path / "grid.zarr")
    feats = [run_features(c, tmp_path / t.id / "features.zarr", options=options, plan=plan, tile=t.id)
             for c, t in zip(cubes, layout.tiles, strict=True)]
    run_features(write_zarr_atomic(cube, tmp_path / "cube.zarr"), tmp_path / "features.zarr", options=options)
    mosaic = run_mosaic_features(feats, tmp_path / "plan.json", tmp_path / "grid.zarr", tmp_path / "mosaic.zarr")
    got, ref = xr.open_zarr(mosaic), xr.open_zarr(tmp_path / "features.zarr")
    assert got["features"].dtype == np.float16 and got.sizes == ref.sizes
    diff = np.abs(got["features"].values.astype(np.float32) - ref["features"].values.astype(np.float32))
    # equal, or one float16 rounding step apart where float32 rounding of the stem crossed one
    assert (diff <= np.abs(ref["features"].values.astype(np.float32)) * 2**-10 + 1e-7).all()
    assert (diff == 0).mean() > 0.99
    np.testing.assert_array_equal(got["valid"].values, ref["valid"].values)
    for name in ("time", "y", "x", "channel", "item_ids"):
        np.testing.assert_array_equal(got[name].values, ref[name].values)
    for key in ("crs", "transform", "features_pca_components", "features_stem"):
        assert got.attrs[key] == ref.attrs[key]


def test_tiling_config_is_checked() -> None:
    import copy

    import yaml
    from conftest import paper_protocol

    from pipeline.config import check_config

    base = paper_protocol(yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text()))
    assert check_config(copy.deepcopy(base))["runtime"]["tiling"] == {"tile_size": None, "overlap": None}  # untiled default
    config = copy.deepcopy(base)
    config["runtime"]["tiling"] = {"tile_size": 100}
    with pytest.raises(ConfigError, match="tiling.tile_size': 100 is not a multiple of 16"):
        check_config(config)
    config = copy.deepcopy(base)
    config["runtime"]["tiling"] = {"tile_size": 128}
    config["voting"] = {"method": "majority"}  # voting runs on the mosaic map: fine when tiled
    assert check_config(copy.deepcopy(config))["voting"]["method"] == "majority"
    config["train"]["relearning"] = "object"
    with pytest.raises(ConfigError, match="'object' relearning segments whole dates"):
        check_config(config)


def test_tile_composites_on_the_aoi_grid_equal_the_untiled_composite(tmp_path: Path) -> None:
    """cube.period with tiles: the plan composites the AOI mosaic for its grid store and PCA, and
    each tile's composite (python -m pipeline.composite --plan --tile) and features equal the
    untiled composite and features on the tile's core; the 'best' composite ranks acquisitions by
    their AOI-level clear fraction even where a tile's own fraction orders them otherwise."""
    import datetime as dt

    from pipeline.composite import run_composite
    from pipeline.errors import GridError
    from pipeline.features import run_features
    from pipeline.raster.load import CubeOptions
    from pipeline.tiling.plan import TilePlan, plan_tiles
    from pipeline.timegrid.composite import composite_cube
    from pipeline.timegrid.grid import time_grid

    cube = synthetic_cube((40, 44), dates=8, seed=2)  # 2021-01-01 + 16 d steps; date 1 ~10 % valid
    aoi = {"bbox": [113.0, 28.1, 113.01, 28.11], "start": "2021-01-01", "end": "2021-05-31", "crs": "EPSG:32649"}
    grid = time_grid(dt.date(2021, 1, 1), dt.date(2021, 5, 31), "1MS")  # 5 steps; May holds no acquisition
    layout = tile_layout((40, 44), tile_size=24, overlap=16)
    options = FeatureOptions(stem="gabor", pca_sample=400, chunk=16, dtype="float32", device="cpu")
    aoi_fraction = (cube["valid"].sum(("y", "x")) / (40 * 44)).astype(np.float32).values
    paths = []
    for tile in layout.tiles:  # the tile's own fractions, reversed: ranking by them would pick other dates
        part = tile_cube(cube, tile).assign(valid_fraction=("time", (1 - aoi_fraction).astype(np.float32)))
        paths.append(write_zarr_atomic(part, tmp_path / "tiles" / tile.id / "cube.zarr"))
    plan = plan_tiles(paths, layout, min_valid_fraction=0.3, features=options, plan_path=tmp_path / "plan.json",
                      grid_path=tmp_path / "grid.zarr", time_grid=grid, composite="best", fill="linear")
    kept = [0, 2, 3, 4, 5, 6, 7]  # date 1 is below min_valid_fraction, as the untiled cube stage drops it
    untiled = composite_cube(cube.isel(time=kept).assign(valid_fraction=("time", aoi_fraction[kept])), grid,
                             method="best", fill="linear")
    assert TilePlan.read(tmp_path / "plan.json").to_dict() == plan.to_dict()
    np.testing.assert_array_equal(plan.dates, grid.starts)
    np.testing.assert_array_equal(plan.time_grid.acquisitions, cube.time.values[kept])
    stored = xr.open_zarr(tmp_path / "grid.zarr")
    for name in ("valid", "valid_fraction", "aoi_mask"):
        np.testing.assert_array_equal(stored[name].values, untiled[name].values, err_msg=name)
    assert stored.attrs["time_grid"] == untiled.attrs["time_grid"] and stored.attrs["time_grid"]["empty_steps"] == 1
    np.testing.assert_array_equal(stored["item_ids"].values, untiled["item_ids"].values)
    untiled_fit = fit_cube_pca(untiled, options)
    np.testing.assert_allclose(plan.pca.components, untiled_fit.components, rtol=0, atol=1e-6)

    expected = build_features(untiled, options).compute()
    cube_options = CubeOptions(period="1MS", composite="best", fill="linear")
    picked_differently = 0
    for tile, path in zip(layout.tiles, paths, strict=True):
        out = run_composite(path, aoi, cube_options, tmp_path / "tiles" / tile.id / "composite.zarr",
                            plan=plan, tile=tile.id)
        got = xr.open_zarr(out).isel(y=tile.core_in_window[0], x=tile.core_in_window[1])
        ref = untiled.isel(y=tile.core.slices[0], x=tile.core.slices[1])
        for name in ("reflectance", "valid", "clear_count"):
            np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=f"{tile.id} {name}")
        mine = composite_cube(xr.open_zarr(path).isel(time=kept), grid, method="best", fill="linear")
        core = mine["reflectance"].isel(y=tile.core_in_window[0], x=tile.core_in_window[1]).values
        picked_differently += int((~np.isclose(core, ref["reflectance"].values, equal_nan=True)).sum())
        feats = xr.open_zarr(run_features(out, tmp_path / "tiles" / tile.id / "features.zarr", options=options,
                                          plan=plan, tile=tile.id))
        np.testing.assert_allclose(feats["features"].isel(y=tile.core_in_window[0], x=tile.core_in_window[1]).values,
                                   expected["features"].isel(y=tile.core.slices[0], x=tile.core.slices[1]).values,
                                   rtol=0, atol=2e-5, err_msg=tile.id)
    assert picked_differently > 0  # the tiles' own fractions would have changed the 'best' picks

    with pytest.raises(GridError, match="another time grid"):
        run_composite(paths[0], aoi, CubeOptions(period="16D", composite="best", fill="linear"),
                      tmp_path / "other.zarr", plan=plan, tile=layout.tiles[0].id)
    with pytest.raises(GridError, match="not the cube of tile r0c1"):
        run_composite(paths[0], aoi, cube_options, tmp_path / "other.zarr", plan=plan, tile="r0c1")
