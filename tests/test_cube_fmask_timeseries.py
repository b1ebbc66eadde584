"""A real Landsat 5/7 SR time series with an Fmask asset, described purely through config
(asset mapping, scaling, QA decoding by class values), loads into a cube with the right dates
and masks."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.warp import transform_bounds

from pipeline import cube as cube_stage
from pipeline import search as search_stage
from pipeline.stac.local_index import item_from_rasters, write_catalog_folder

N_DATES = 12
SENSOR = {
    "bands": {"red": "b3", "nir08": "b4", "swir16": "b5"},
    "scaling": {b: {"scale": 1e-4, "offset": 0.0, "nodata": -9999} for b in ("red", "nir08", "swir16")},
    "qa": {"asset": "fmask", "decode": "values", "invalid_values": [2, 4, 255], "nodata": 255},
}


def scene_date(name: str) -> dt.date:
    """LE7/LT5 + path(3) + row(3) + year(4) + day of year(3) + station."""
    year, doy = int(name[9:13]), int(name[13:16])
    return dt.date(year, 1, 1) + dt.timedelta(days=doy - 1)


@pytest.fixture
def fmask_catalog(shared_dir: Path, tmp_path: Path):
    root = shared_dir / "data" / "landsat-sr-timeseries"
    folders = sorted(root.iterdir())[:N_DATES]
    items = []
    for folder in folders:
        when = dt.datetime.combine(scene_date(folder.name), dt.time(17, 30))
        platform = "landsat-7" if folder.name.startswith("LE7") else "landsat-5"
        assets = {k: folder / f"{folder.name}_{k}.tif" for k in ("b3", "b4", "b5", "fmask")}
        items.append(item_from_rasters(folder.name, when, assets, properties={"platform": platform},
                                       collection="landsat-sr", nodata={"fmask": 255}))
    catalog = write_catalog_folder(tmp_path / "catalog", "landsat-sr", items)
    with rasterio.open(folders[0] / f"{folders[0].name}_b3.tif") as src:
        lonlat = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    # shrink a little so the AOI grid lies inside the scenes
    w, s, e, n = lonlat
    bbox = [w + 0.002, s + 0.002, e - 0.002, n - 0.002]
    return catalog, folders, bbox


def test_fmask_series_loads_with_dates_and_masks(fmask_catalog, tmp_path: Path) -> None:
    catalog, folders, bbox = fmask_catalog
    aoi = {"bbox": bbox, "start": "2008-01-01", "end": "2013-12-31", "crs": "EPSG:32613"}
    items_json = tmp_path / "items.json"
    assert search_stage.main(["--name", "colorado", "--aoi", json.dumps(aoi), "--out", str(items_json),
                              "--options", json.dumps({"url": str(catalog), "collection": "landsat-sr",
                                                       "platforms": ["landsat-5", "landsat-7"]})]) == 0
    out = tmp_path / "cube.zarr"
    assert cube_stage.main(["--items", str(items_json), "--name", "colorado", "--aoi", json.dumps(aoi),
                            "--sensor", json.dumps(SENSOR), "--options", json.dumps({"chunk": 64}),
                            "--out", str(out)]) == 0
    cube = xr.open_zarr(out)
    dates = [str(t)[:10] for t in cube.time.values]
    assert dates == [scene_date(f.name).isoformat() for f in folders]
    assert list(cube.band.values) == ["red", "nir08", "swir16"]

    # native 30 m grid with centre anchoring: pixels are copied, not resampled
    xx, yy = np.meshgrid(cube.x.values, cube.y.values, indexing="xy")
    for i, folder in enumerate(folders):
        with rasterio.open(folder / f"{folder.name}_fmask.tif") as src:
            fmask = src.read(1)
            rows, cols = rasterio.transform.rowcol(src.transform, xx.ravel(), yy.ravel())
        rows, cols = np.asarray(rows).reshape(xx.shape), np.asarray(cols).reshape(xx.shape)
        fm = fmask[rows, cols]
        with rasterio.open(folder / f"{folder.name}_b3.tif") as src:
            red = src.read(1)[rows, cols]
        expected_valid = ~np.isin(fm, [2, 4, 255]) & (red != -9999)
        got = cube.valid.isel(time=i).values
        np.testing.assert_array_equal(got, expected_valid & cube.aoi_mask.values, err_msg=folder.name)
        expected_red = np.where(red == -9999, np.nan, red * 1e-4).astype(np.float32)
        np.testing.assert_allclose(cube.reflectance.isel(time=i).sel(band="red").values, expected_red,
                                   atol=1e-6, equal_nan=True)
    assert float(cube.valid_fraction.min()) < float(cube.valid_fraction.max())  # cloudy and clear dates
