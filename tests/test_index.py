"""``python -m pipeline.index``: folders of synthetic GeoTIFFs (single-band files grouped by date,
multi-band files) indexed into catalog folders, then searched (rustac on loopback) and loaded
by the real cube stage; and the clear errors (unmatched, duplicate, non-georeferenced files)
that leave nothing at --out."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp
import xarray as xr
from test_local_catalog import CUBE, ORIGIN, RES, SIZE, aoi, at, write_tif

from pipeline import cube as cube_stage
from pipeline import index as index_stage
from pipeline import search as search_stage
from pipeline.stac.local_index import solar_noon_utc
from pipeline.stac.scan import parse_date

DATES = ["2021-04-03", "2021-04-19", "2021-05-05"]


def run_index(folder: Path, out: Path, *args: str) -> int:
    return index_stage.main([str(folder), "--out", str(out), *args])


def search_and_cube(catalog: Path, tmp_path: Path, collection: str, sensor: dict) -> xr.Dataset:
    items = tmp_path / "res" / "items.json"
    assert search_stage.main(["--name", "mine", "--aoi", json.dumps(aoi()), "--out", str(items), "--options",
                              json.dumps({"url": str(catalog), "collection": collection, "platforms": []})]) == 0
    out = tmp_path / "res" / "cube.zarr"
    assert cube_stage.main(["--items", str(items), "--name", "mine", "--aoi", json.dumps(aoi()), "--sensor",
                            json.dumps(sensor), "--options", json.dumps(CUBE), "--out", str(out)]) == 0
    return xr.open_zarr(out)


@pytest.fixture
def single_band_folder(tmp_path: Path) -> Path:
    """Per date: ``LX_<YYYYMMDD>_<band>.tif`` for red and nir (uint16, nodata 0), plus a readme."""
    folder = tmp_path / "scenes"
    for i, date in enumerate(DATES):
        stamp = date.replace("-", "")
        red = np.full((SIZE, SIZE), 1000 + 10 * i, np.uint16)
        red[6, 7] = 0
        write_tif(folder / f"LX_{stamp}_red.tif", red, nodata=0)
        write_tif(folder / f"LX_{stamp}_nir.tif", np.full((SIZE, SIZE), 4000 + i, np.uint16), nodata=0)
    (folder / "readme.txt").write_text("not a raster")
    return folder


def test_single_band_files_grouped_by_date(single_band_folder: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    assert run_index(single_band_folder, catalog, "--pattern", r"LX_(?P<date>\d{8})_(?P<asset>[a-z]+)\.tif$",
                     "--scale", "1e-4", "--offset", "0", "--collection", "mine") == 0
    items = sorted((catalog / "items").glob("*.json"))
    assert [p.name for p in items] == ["mine_20210403.json", "mine_20210419.json", "mine_20210505.json"]
    item = json.loads(items[0].read_text())
    assert item["assets"]["red"]["href"] == "../../scenes/LX_20210403_red.tif"  # relative to the item file
    assert item["assets"]["red"]["raster:bands"] == [{"data_type": "uint16", "nodata": 0, "scale": 1e-4,
                                                      "offset": 0.0}]
    props = item["properties"]
    assert props["proj:code"] == "EPSG:32631" and props["proj:shape"] == [SIZE, SIZE]
    assert props["proj:transform"] == [RES, 0.0, ORIGIN[0], 0.0, -RES, ORIGIN[1]]
    assert json.loads((catalog / "collection.json").read_text())["id"] == "mine"

    ds = search_and_cube(catalog, tmp_path, "mine", {"bands": {"red": "red", "nir": "nir"}, "qa": None})
    assert [str(t)[:10] for t in ds.time.values] == DATES
    np.testing.assert_allclose(at(ds, "reflectance", 8, 8, band="red"), [0.100, 0.101, 0.102], rtol=1e-5)
    np.testing.assert_allclose(at(ds, "reflectance", 8, 8, band="nir"), [0.4000, 0.4001, 0.4002], rtol=1e-5)
    assert not at(ds, "valid", 6, 7).any() and at(ds, "valid", 8, 8).all()


def test_multiband_files_one_item_each(tmp_path: Path) -> None:
    """One 4-band float32 file per date (NaN nodata), date in the name as YYYYDDD, default pattern."""
    folder = tmp_path / "stack"
    for i, date in enumerate(DATES):
        day = dt.date.fromisoformat(date)
        data = np.stack([np.full((SIZE, SIZE), v + i / 100, np.float32) for v in (0.05, 0.08, 0.1, 0.45)])
        data[2, 9, 9] = np.nan
        write_tif(folder / "sub" / f"stack_{day.year}{day.timetuple().tm_yday:03d}.tif", data, nodata=float("nan"))
    catalog = tmp_path / "catalog"
    assert run_index(folder, catalog, "--band-names", "blue,green,red,nir", "--platform", "my-drone") == 0
    item = json.loads(min((catalog / "items").glob("*.json")).read_text())
    assert item["id"] == "stack_20210403" and item["properties"]["platform"] == "my-drone"
    image = item["assets"]["image"]
    assert image["href"] == "../../stack/sub/stack_2021093.tif"
    assert [b["name"] for b in image["eo:bands"]] == ["blue", "green", "red", "nir"]
    assert image["raster:bands"][2] == {"data_type": "float32", "nodata": "nan", "name": "red"}

    sensor = {"bands": {"red": {"asset": "image", "band": 3}, "nir": {"asset": "image", "band": 4}}, "qa": None}
    ds = search_and_cube(catalog, tmp_path, "stack", sensor)
    assert [str(t)[:10] for t in ds.time.values] == DATES
    np.testing.assert_allclose(at(ds, "reflectance", 8, 8, band="red"), [0.10, 0.11, 0.12], rtol=1e-6)
    np.testing.assert_allclose(at(ds, "reflectance", 8, 8, band="nir"), [0.45, 0.46, 0.47], rtol=1e-6)
    assert np.isnan(at(ds, "reflectance", 9, 9, band="red")).all() and not at(ds, "valid", 9, 9).any()


def test_date_only_items_keep_their_date_everywhere() -> None:
    for lon in (-179.0, -100.0, 0.0, 112.9, 179.0):
        when = solar_noon_utc(dt.date(2021, 4, 3), lon)
        assert when.date() == dt.date(2021, 4, 3)  # UTC date
        assert (when + dt.timedelta(hours=lon / 15.0)).date() == dt.date(2021, 4, 3)  # the cube's solar day
    assert parse_date("2021093", None) == (dt.datetime(2021, 4, 3), False)
    assert parse_date("03.04.2021", "%d.%m.%Y") == (dt.datetime(2021, 4, 3), False)
    assert parse_date("99999999", None) is None


def catalog_left(out: Path) -> list[Path]:
    return [p for p in out.parent.iterdir() if p.name.startswith((out.name, f".tmp-{out.name}"))]


def test_unmatched_files_listed_or_skipped(single_band_folder: Path, tmp_path: Path, caplog) -> None:
    write_tif(single_band_folder / "LX_extra_red.tif", np.ones((SIZE, SIZE), np.uint16))
    out = tmp_path / "catalog"
    pattern = r"LX_(?P<date>\d{8})_(?P<asset>[a-z]+)\.tif$"
    assert run_index(single_band_folder, out, "--pattern", pattern) == 2
    assert catalog_left(out) == []
    for part in ("1 file(s)", "LX_extra_red.tif", "do not match --pattern", "--skip-unmatched"):
        assert part in caplog.text, part
    assert run_index(single_band_folder, out, "--pattern", pattern, "--skip-unmatched") == 0
    assert len(list((out / "items").glob("*.json"))) == 3
    assert "skipping 1 file(s)" in caplog.text


def test_two_files_for_one_date_and_asset(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "scenes"
    write_tif(folder / "a_2021-04-03.tif", np.ones((SIZE, SIZE), np.uint16))
    write_tif(folder / "b_20210403.tif", np.ones((SIZE, SIZE), np.uint16))
    out = tmp_path / "catalog"
    assert run_index(folder, out) == 2 and catalog_left(out) == []
    for part in ("two files for date 2021-04-03 and asset 'image'", "a_2021-04-03.tif", "b_20210403.tif",
                 "(?P<scene>...)"):
        assert part in caplog.text, part


def test_non_georeferenced_file(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "scenes"
    write_tif(folder / "ok_20210403.tif", np.ones((SIZE, SIZE), np.uint16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(folder / "raw_20210419.tif", "w", driver="GTiff", width=4, height=4, count=1,
                           dtype="uint8") as dst:
            dst.write(np.ones((1, 4, 4), np.uint8))
    out = tmp_path / "catalog"
    assert run_index(folder, out) == 2 and catalog_left(out) == []
    for part in ("raw_20210419.tif is not georeferenced", "gdal_edit.py -a_srs", "move it out of the folder"):
        assert part in caplog.text, part


def test_bad_options_and_out_paths(single_band_folder: Path, tmp_path: Path, caplog) -> None:
    out = tmp_path / "catalog"
    assert run_index(single_band_folder, out, "--pattern", r"LX_(\d{8})") == 2
    assert "has no (?P<date>...) group" in caplog.text
    assert run_index(single_band_folder, out, "--pattern", r"LX_(?P<date>\d{8})_(?P<asset>[a-z]+)",
                     "--date-format", "%d%m%Y") == 2
    assert "'20210403', which is not a date (--date-format '%d%m%Y')" in caplog.text
    assert run_index(single_band_folder, single_band_folder) == 2
    assert "would replace the scene folder" in caplog.text
    assert (single_band_folder / "LX_20210403_red.tif").exists()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert run_index(single_band_folder, precious, "--pattern", r"LX_(?P<date>\d{8})_(?P<asset>[a-z]+)") == 2
    assert "not a catalog folder" in caplog.text and (precious / "notes.txt").read_text() == "keep me"
    assert catalog_left(out) == []


def test_band_names_must_match_the_band_count(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "stack"
    write_tif(folder / "s_20210403.tif", np.ones((3, SIZE, SIZE), np.uint16))
    out = tmp_path / "catalog"
    assert run_index(folder, out, "--band-names", "red,nir") == 2 and catalog_left(out) == []
    assert "s_20210403.tif has 3 bands but --band-names gives 2 (red, nir)" in caplog.text


def test_catalog_inside_the_scene_folder_and_reindexing(single_band_folder: Path, tmp_path: Path) -> None:
    """--out inside FOLDER is not indexed itself; rerunning replaces the catalog atomically."""
    out = single_band_folder / "catalog"
    pattern = r"LX_(?P<date>\d{8})_(?P<asset>[a-z]+)\.tif$"
    assert run_index(single_band_folder, out, "--pattern", pattern) == 0
    write_tif(out / "stray_20210101.tif", np.ones((SIZE, SIZE), np.uint16))  # inside --out: ignored
    assert run_index(single_band_folder, out, "--pattern", pattern) == 0
    item = json.loads((out / "items" / "scenes_20210403.json").read_text())
    assert item["assets"]["nir"]["href"] == "../../LX_20210403_nir.tif"
    assert not (out / "stray_20210101.tif").exists()  # the old catalog folder was replaced as a whole
    with rasterio.open(out / "items" / item["assets"]["nir"]["href"]) as src:
        assert int(src.read(1)[0, 0]) == 4000


def test_real_landsat_series_indexed_with_scene_and_day_of_year(shared_dir: Path, tmp_path: Path) -> None:
    """The real Landsat 5/7 series of ../shared (folders LE7/LT5 + path/row + YYYYDDD): indexed,
    searched and loaded; dates and a pixel's reflectance match the files."""
    from test_cube_fmask_timeseries import SENSOR, scene_date

    root = shared_dir / "data" / "landsat-sr-timeseries"
    catalog = tmp_path / "catalog"
    pattern = r"(?P<scene>L[ET][57]\d{6})(?P<date>\d{7})[^/]*/[^/]+_(?P<asset>b3|b4|b5|fmask)\.tif$"
    assert run_index(root, catalog, "--pattern", pattern, "--date-format", "%Y%j", "--collection", "landsat-sr",
                     "--platform", "landsat-7") == 0
    folders = sorted(root.iterdir())
    assert len(list((catalog / "items").glob("*.json"))) == len(folders)
    first = json.loads((catalog / "items" / f"landsat-sr_{folders[0].name[:9]}_20080427.json").read_text())
    assert sorted(first["assets"]) == ["b3", "b4", "b5", "fmask"]
    assert first["assets"]["b3"]["raster:bands"] == [{"data_type": "int16", "nodata": -9999}]

    with rasterio.open(folders[0] / f"{folders[0].name}_b3.tif") as src:
        w, s, e, n = rasterio.warp.transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        x, y = src.xy(30, 30)
    the_aoi = {"bbox": [w + 0.002, s + 0.002, e - 0.002, n - 0.002], "start": "2008-01-01", "end": "2008-12-31",
               "crs": "EPSG:32613"}
    items = tmp_path / "items.json"
    assert search_stage.main(["--name", "co", "--aoi", json.dumps(the_aoi), "--out", str(items), "--options",
                              json.dumps({"url": str(catalog), "collection": "landsat-sr", "platforms": []})]) == 0
    out = tmp_path / "cube.zarr"
    assert cube_stage.main(["--items", str(items), "--name", "co", "--aoi", json.dumps(the_aoi), "--sensor",
                            json.dumps(SENSOR), "--options", json.dumps({"chunk": 64}), "--out", str(out)]) == 0
    ds = xr.open_zarr(out)
    in_2008 = sorted((f for f in folders if scene_date(f.name).year == 2008), key=lambda f: scene_date(f.name))
    assert [str(t)[:10] for t in ds.time.values] == [scene_date(f.name).isoformat() for f in in_2008]
    expected = []
    for f in in_2008:
        with rasterio.open(f / f"{f.name}_b3.tif") as src:
            dn = int(src.read(1)[30, 30])
            expected.append(np.nan if dn == -9999 else dn * 1e-4)
    got = ds.reflectance.sel(band="red").sel(x=x, y=y, method="nearest", tolerance=1.0).values
    np.testing.assert_allclose(got, expected, rtol=1e-5, equal_nan=True)
