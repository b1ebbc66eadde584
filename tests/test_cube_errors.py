"""Cube stage on bad inputs: truncated assets (raise / skip-and-record), items in different UTM
zones, items lacking assets. Real scene files served over HTTP with Range requests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.warp import Resampling, calculate_default_transform, reproject

from conftest import BAND_FILES, SCENE
from pipeline import cube as cube_stage
from pipeline import search as search_stage

AOI = {"bbox": [-39.6, 72.0, -38.4, 72.5], "start": "2025-07-01", "end": "2025-07-31", "crs": "EPSG:32624"}
CUBE = {"resolution": 600, "anchor": "edge", "chunk": 256}


def copy_scene(shared: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for suffix in BAND_FILES.values():
        shutil.copy(shared / "data" / "landsat-c2l2-scene" / f"{SCENE}_{suffix}.TIF", dest)
    return dest


def search_and_cube(catalog: Path, tmp_path: Path, cube_opts: dict) -> tuple[int, Path]:
    items = tmp_path / "items.json"
    assert search_stage.main(["--name", "g", "--aoi", json.dumps(AOI), "--out", str(items),
                              "--options", json.dumps({"url": str(catalog), "platforms": []})]) == 0
    out = tmp_path / "cube.zarr"
    code = cube_stage.main(["--items", str(items), "--name", "g", "--aoi", json.dumps(AOI),
                            "--options", json.dumps(cube_opts), "--out", str(out)])
    return code, out


@pytest.fixture
def truncated_catalog(shared_dir: Path, real_scene_catalog, tmp_path: Path):
    """Two dates; the second date's red band is served truncated to a third of its bytes."""
    root = copy_scene(shared_dir, tmp_path / "served")
    bad = root / f"bad_{SCENE}_SR_B4.TIF"
    data = (root / f"{SCENE}_SR_B4.TIF").read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    folder, items, server = real_scene_catalog(tmp_path / "catalog", root=root)
    second = folder / "items" / f"{items[1]['id']}.json"
    item = json.loads(second.read_text())
    item["assets"]["red"]["href"] = f"{server.url}/{bad.name}"
    second.write_text(json.dumps(item))
    return folder, items


def test_truncated_asset_raises_naming_the_item(truncated_catalog, tmp_path: Path, caplog) -> None:
    folder, items = truncated_catalog
    code, out = search_and_cube(folder, tmp_path, {**CUBE, "on_error": "raise"})
    assert code == 2
    assert not out.exists() and not list(tmp_path.glob(".tmp-cube.zarr*"))
    assert items[1]["id"] in caplog.text and "on_error: skip" in caplog.text


def test_truncated_asset_skipped_and_recorded(truncated_catalog, tmp_path: Path) -> None:
    folder, items = truncated_catalog
    code, out = search_and_cube(folder, tmp_path, {**CUBE, "on_error": "skip"})
    assert code == 0
    cube = xr.open_zarr(out)
    assert cube.sizes["time"] == 1
    assert str(cube.time.values[0])[:10] == "2025-07-10"
    assert len(cube.attrs["skipped"]) == 1 and items[1]["id"] in cube.attrs["skipped"][0]
    assert np.isfinite(cube.reflectance.values).any()  # the good date is intact


def test_low_valid_fraction_dates_dropped(real_scene_catalog, tmp_path: Path) -> None:
    folder, _, _ = real_scene_catalog(tmp_path / "catalog")
    code, out = search_and_cube(folder, tmp_path, {**CUBE, "min_valid_fraction": 0.99})
    assert code == 2  # the real scene is ~50 % cloudy: nothing left, clear error


def test_items_in_two_utm_zones_share_one_grid(shared_dir: Path, real_scene_catalog, tmp_path: Path) -> None:
    """The second date is the same scene reprojected to UTM 25N: it lands on the 24N grid."""
    root = copy_scene(shared_dir, tmp_path / "served")
    for suffix in BAND_FILES.values():
        src_path = root / f"{SCENE}_{suffix}.TIF"
        with rasterio.open(src_path) as src:
            transform, width, height = calculate_default_transform(src.crs, "EPSG:32625", src.width, src.height,
                                                                   *src.bounds, resolution=515)
            profile = src.profile | {"crs": "EPSG:32625", "transform": transform, "width": width, "height": height}
            with rasterio.open(root / f"z25_{src_path.name}", "w", **profile) as dst:
                reproject(rasterio.band(src, 1), rasterio.band(dst, 1), resampling=Resampling.nearest,
                          dst_nodata=src.nodata if src.nodata is not None else 1)
    folder, items, server = real_scene_catalog(tmp_path / "catalog", root=root)
    second = folder / "items" / f"{items[1]['id']}.json"
    item = json.loads(second.read_text())
    for key, suffix in BAND_FILES.items():
        item["assets"][key]["href"] = f"{server.url}/z25_{SCENE}_{suffix}.TIF"
    item["properties"].update({"proj:epsg": 32625, "proj:shape": [height, width], "proj:transform": list(transform)[:6]})
    second.write_text(json.dumps(item))

    code, out = search_and_cube(folder, tmp_path, CUBE)
    assert code == 0
    cube = xr.open_zarr(out)
    assert cube.attrs["crs"] == "EPSG:32624" and cube.sizes["time"] == 2
    a = cube.reflectance.sel(band="nir08").isel(time=0).values
    b = cube.reflectance.sel(band="nir08").isel(time=1).values
    both = np.isfinite(a) & np.isfinite(b)
    assert both.sum() > 0.5 * cube.aoi_mask.values.sum()
    # same surface after two nearest-neighbour resamplings: registered to the same pixels, i.e.
    # closer to date 0 than date 0 is to itself shifted by one pixel in any direction
    err = np.nanmean(np.abs(a - b)[both])
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        shifted = np.roll(a, (dy, dx), axis=(0, 1))
        ok = both & np.isfinite(shifted)
        assert err < np.nanmean(np.abs(a - shifted)[ok])
    assert np.corrcoef(a[both], b[both])[0, 1] > 0.75


def test_item_missing_an_asset(real_scene_catalog, tmp_path: Path, caplog) -> None:
    folder, items, _ = real_scene_catalog(tmp_path / "catalog")
    path = folder / "items" / f"{items[0]['id']}.json"
    item = json.loads(path.read_text())
    del item["assets"]["swir22"]
    path.write_text(json.dumps(item))
    code, out = search_and_cube(folder, tmp_path, CUBE)
    assert code == 2 and "lacks assets ['swir22']" in caplog.text
    code, out = search_and_cube(folder, tmp_path / "skip", {**CUBE, "on_error": "skip"})
    assert code == 0 and xr.open_zarr(out).sizes["time"] == 1
