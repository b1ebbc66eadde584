"""Search + cube against real parts: rustac's STAC API on loopback serving real Planetary Computer
items, whose assets point at a real Landsat 8 C2 L2 scene served over HTTP with Range requests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

from pipeline import cube as cube_stage
from pipeline import search as search_stage
from pipeline.raster.qa import bit_mask

from conftest import SCENE

AOI = {"bbox": [-39.6, 72.0, -38.4, 72.5], "start": "2025-07-01", "end": "2025-07-31", "crs": "EPSG:32624"}
CUBE = {"resolution": 600, "anchor": "edge", "chunk": 128}


@pytest.fixture
def scene_catalog(real_scene_catalog, tmp_path: Path):
    return real_scene_catalog(tmp_path / "catalog")


def run_search_and_cube(catalog: Path, tmp_path: Path, cube_opts: dict | None = None) -> tuple[xr.Dataset, Path]:
    items_json = tmp_path / "out" / "items.json"
    assert search_stage.main([
        "--name", "greenland", "--aoi", json.dumps(AOI), "--out", str(items_json),
        "--options", json.dumps({"url": str(catalog), "platforms": []}),
    ]) == 0
    out = tmp_path / "out" / "cube.zarr"
    assert cube_stage.main([
        "--items", str(items_json), "--name", "greenland", "--aoi", json.dumps(AOI),
        "--options", json.dumps(cube_opts or CUBE), "--out", str(out), "--threads", "2",
    ]) == 0
    return xr.open_zarr(out), items_json


def sample_source(path: Path, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Independent nearest-neighbour lookup: the source pixel containing each (x, y)."""
    with rasterio.open(path) as src:
        data = src.read(1)
        rows, cols = rasterio.transform.rowcol(src.transform, xs, ys)
    return data[np.asarray(rows), np.asarray(cols)]


def test_search_and_cube_real_scene(scene_catalog, shared_dir: Path, tmp_path: Path) -> None:
    catalog, items, server = scene_catalog
    cube, items_json = run_search_and_cube(catalog, tmp_path)

    frozen = json.loads(items_json.read_text())
    assert [f["id"] for f in frozen["features"]] == sorted(i["id"] for i in items) or len(frozen["features"]) == 2
    assert frozen["pipeline:search"]["filter_mode"] == "client-side"  # rustac declares no Query/Filter
    assert cube.attrs["crs"] == "EPSG:32624"
    assert list(cube.band.values) == ["coastal", "blue", "green", "red", "nir08", "swir16", "swir22"]
    assert cube.reflectance.dims == ("time", "band", "y", "x") and cube.reflectance.dtype == np.float32
    assert cube.sizes["time"] == 2
    # GDAL read the COGs over HTTP with Range requests
    assert any(rng is not None for _, rng in server.requests)

    scene = shared_dir / "data" / "landsat-c2l2-scene"
    yy, xx = np.meshgrid(cube.y.values, cube.x.values, indexing="ij")
    inside = cube.aoi_mask.values
    red_dn = sample_source(scene / f"{SCENE}_SR_B4.TIF", xx.ravel(), yy.ravel()).reshape(xx.shape)
    expected_red = np.where(red_dn == 0, np.nan, red_dn * 2.75e-05 - 0.2).astype(np.float32)
    got_red = cube.reflectance.sel(band="red").isel(time=0).values
    # a known pixel: the first non-fill one inside the AOI
    r, c = np.argwhere(inside & (red_dn > 0))[0]
    assert got_red[r, c] == pytest.approx(red_dn[r, c] * 2.75e-05 - 0.2, abs=1e-6)
    np.testing.assert_allclose(got_red, expected_red, rtol=0, atol=1e-6, equal_nan=True)

    qa = sample_source(scene / f"{SCENE}_QA_PIXEL.TIF", xx.ravel(), yy.ravel()).reshape(xx.shape)
    expected_valid = ((qa & bit_mask((0, 1, 2, 3, 4))) == 0) & inside & (red_dn > 0)
    assert int(cube.valid.isel(time=0).sum()) == int(expected_valid.sum())
    assert int(expected_valid.sum()) > 100 and int((~expected_valid & inside).sum()) > 100  # both kinds present
    np.testing.assert_array_equal(cube.qa.isel(time=0).values, qa)
    frac = float(cube.valid_fraction.isel(time=0))
    assert frac == pytest.approx(expected_valid.sum() / inside.sum(), rel=1e-5)


def test_chunked_cube_equals_single_chunk(scene_catalog, tmp_path: Path) -> None:
    catalog, _, _ = scene_catalog
    small, _ = run_search_and_cube(catalog, tmp_path / "a", {**CUBE, "chunk": 64})
    big, _ = run_search_and_cube(catalog, tmp_path / "b", {**CUBE, "chunk": 4096})
    xr.testing.assert_identical(small.reflectance.load(), big.reflectance.load())
    np.testing.assert_array_equal(small.valid.values, big.valid.values)
