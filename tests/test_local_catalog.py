"""Users' own catalog folders through the real search (rustac on loopback) and cube stages:
asset hrefs in every form (absolute paths, paths relative to the item file, file:// URIs, http
and s3 URLs), float assets with NaN nodata, no quality band (sensor.qa: null) and multi-band
files (sensor.bands {asset, band}). GeoTIFFs are written with rasterio in UTM 31N."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from pipeline import cube as cube_stage
from pipeline import search as search_stage
from pipeline.config import check_config, load_config
from pipeline.errors import ConfigError, CubeError, StacError
from pipeline.raster.gdal_env import file_uri_to_path
from pipeline.raster.load import missing_dn
from pipeline.raster.sensors import (
    BandSource,
    SensorOptions,
    band_index_problems,
    parse_nodata,
    resolve_scaling,
)
from pipeline.stac.hrefs import absolute_href, check_no_server_hrefs

REPO = Path(__file__).resolve().parents[1]
CRS = "EPSG:32631"
ORIGIN = (499980.0, 5630010.0)  # multiples of 30 m: the cube grid (anchor edge) copies pixels
RES = 30.0
SIZE = 16
TRANSFORM = from_origin(*ORIGIN, RES, RES)
PROJ = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
CUBE = {"resolution": RES, "anchor": "edge", "chunk": 8}


def write_tif(path: Path, data: np.ndarray, *, nodata: float | None = None) -> Path:
    """A GeoTIFF of ``data`` ((bands,) y, x) on the test grid (UTM 31N, 30 m)."""
    data = data if data.ndim == 3 else data[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs=CRS, transform=TRANSFORM, nodata=nodata) as dst:
        dst.write(data)
    return path


def lonlat_bounds(margin_px: float = 0.0) -> list[float]:
    w, n = ORIGIN[0] + margin_px * RES, ORIGIN[1] - margin_px * RES
    e, s = ORIGIN[0] + (SIZE - margin_px) * RES, ORIGIN[1] - (SIZE - margin_px) * RES
    return list(transform_bounds(CRS, "EPSG:4326", w, s, e, n, densify_pts=21))


def aoi(start: str = "2021-01-01", end: str = "2021-12-31") -> dict:
    return {"bbox": lonlat_bounds(3), "start": start, "end": end, "crs": CRS}


def item_dict(item_id: str, date: str, assets: dict[str, dict]) -> dict:
    """A STAC Item as users write it by hand: projection + raster extensions, assets as given."""
    w, s, e, n = lonlat_bounds()
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": "mine",
        "stac_extensions": [PROJ, RASTER], "bbox": [w, s, e, n],
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "properties": {"datetime": f"{date}T10:30:00Z", "proj:code": CRS, "proj:shape": [SIZE, SIZE],
                       "proj:transform": list(TRANSFORM)[:6]},
        "links": [], "assets": {k: {"type": "image/tiff; application=geotiff", "roles": ["data"], **v}
                                for k, v in assets.items()},
    }


def write_catalog(folder: Path, items: list[dict]) -> Path:
    (folder / "items").mkdir(parents=True, exist_ok=True)
    w, s, e, n = lonlat_bounds()
    collection = {"type": "Collection", "stac_version": "1.0.0", "id": "mine", "description": "my scenes",
                  "license": "other", "links": [],
                  "extent": {"spatial": {"bbox": [[w, s, e, n]]},
                             "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]}}}
    (folder / "collection.json").write_text(json.dumps(collection))
    for item in items:
        (folder / "items" / f"{item['id']}.json").write_text(json.dumps(item))
    return folder


def search(catalog: Path, tmp_path: Path, the_aoi: dict | None = None) -> tuple[int, Path]:
    out = tmp_path / "res" / "items.json"
    code = search_stage.main(["--name", "mine", "--aoi", json.dumps(the_aoi or aoi()), "--out", str(out),
                              "--options", json.dumps({"url": str(catalog), "collection": "mine", "platforms": []})])
    return code, out


def cube(items: Path, tmp_path: Path, sensor: dict, the_aoi: dict | None = None) -> tuple[int, Path]:
    out = tmp_path / "res" / "cube.zarr"
    code = cube_stage.main(["--items", str(items), "--name", "mine", "--aoi", json.dumps(the_aoi or aoi()),
                            "--sensor", json.dumps(sensor), "--options", json.dumps(CUBE), "--out", str(out)])
    return code, out


def at(cube_ds: xr.Dataset, var: str, row: int, col: int, **sel: object) -> np.ndarray:
    """Values (over time) of the source pixel (row, col) of the test grid."""
    x, y = ORIGIN[0] + (col + 0.5) * RES, ORIGIN[1] - (row + 0.5) * RES
    return cube_ds[var].sel(**sel).sel(x=x, y=y, method="nearest", tolerance=RES / 100).values


SR = {"data_type": "uint16", "nodata": 0, "scale": 1e-4, "offset": 0.0}
NO_QA = {"bands": {"red": "red", "nir": "nir"}, "qa": None}


# --------------------------------------------------------------------------- hrefs


@pytest.fixture
def href_catalog(tmp_path: Path, range_server):
    """Four dates, one href form each; scene files in a folder whose name holds a space."""
    scenes = tmp_path / "my scenes"
    dates = ["2021-03-01", "2021-04-01", "2021-05-01", "2021-06-01"]
    for i, date in enumerate(dates):
        red = np.full((SIZE, SIZE), 1000 + 100 * i, np.uint16)
        red[5, 6] = 0  # nodata: invalid without any QA band
        write_tif(scenes / f"d{i}_red.tif", red, nodata=0)
        write_tif(scenes / f"d{i}_nir.tif", np.full((SIZE, SIZE), 3000 + i, np.uint16), nodata=0)
    server = range_server(scenes)
    forms = [
        lambda name: str(scenes / name),                      # absolute path
        lambda name: f"../../my scenes/{name}",               # relative to catalog/items/<id>.json
        lambda name: (scenes / name).as_uri(),                # file:// URI (percent-encoded space)
        lambda name: f"{server.url}/{name}",                  # http with range requests
    ]
    items = [item_dict(f"d{i}", date, {b: {"href": form(f"d{i}_{b}.tif"), "raster:bands": [SR]} for b in ("red", "nir")})
             for i, (date, form) in enumerate(zip(dates, forms))]
    return write_catalog(tmp_path / "catalog", items), scenes, server


def test_every_href_form_is_frozen_absolute_and_loads(href_catalog, tmp_path: Path) -> None:
    catalog, scenes, server = href_catalog
    code, items_json = search(catalog, tmp_path)
    assert code == 0
    frozen = json.loads(items_json.read_text())["features"]
    hrefs = {f["id"]: f["assets"]["red"]["href"] for f in frozen}
    assert hrefs == {"d0": (scenes / "d0_red.tif").as_uri(), "d1": (scenes / "d1_red.tif").as_uri(),
                     "d2": (scenes / "d2_red.tif").as_uri(), "d3": f"{server.url}/d3_red.tif"}
    for feature in frozen:  # nothing points at the (stopped) loopback search server
        assert all(not ln["href"].startswith("http://127.0.0.1") for ln in feature["links"]), feature["links"]
    assert "127.0.0.1" not in items_json.read_text().replace(server.url, "")

    code, out = cube(items_json, tmp_path, NO_QA)
    assert code == 0
    ds = xr.open_zarr(out)
    assert [str(t)[:10] for t in ds.time.values] == ["2021-03-01", "2021-04-01", "2021-05-01", "2021-06-01"]
    np.testing.assert_allclose(at(ds, "reflectance", 8, 8, band="red"), [0.10, 0.11, 0.12, 0.13], rtol=1e-6)
    np.testing.assert_allclose(at(ds, "reflectance", 8, 8, band="nir"), [0.3000, 0.3001, 0.3002, 0.3003], rtol=1e-6)
    assert any(rel == "d3_red.tif" for rel, _ in server.requests)  # the http date was read over http
    # no quality band: validity from each band's nodata only, and no 'qa' variable
    assert "qa" not in ds.data_vars and ds.attrs["qa_decoding"] is None
    assert not at(ds, "valid", 5, 6).any() and at(ds, "valid", 8, 8).all()
    assert np.isnan(at(ds, "reflectance", 5, 6, band="red")).all()


def test_s3_hrefs_are_frozen_untouched(tmp_path: Path) -> None:
    href = "s3://my-bucket/scenes/2021/x_red.tif"
    catalog = write_catalog(tmp_path / "catalog", [item_dict("s3", "2021-03-01", {"red": {"href": href}})])
    code, items_json = search(catalog, tmp_path)
    assert code == 0
    assert json.loads(items_json.read_text())["features"][0]["assets"]["red"]["href"] == href


def test_absolute_href_resolves_against_the_item_file(tmp_path: Path) -> None:
    item_file = tmp_path / "cat" / "items" / "a.json"
    assert absolute_href("../scenes/x.tif", item_file) == (tmp_path / "cat" / "scenes" / "x.tif").as_uri()
    assert absolute_href("x%20y.tif", item_file) == (tmp_path / "cat" / "items" / "x y.tif").as_uri()
    assert absolute_href("/data/x_red.tif", item_file) == "file:///data/x_red.tif"
    for kept in ("file:///data/x.tif", "https://h/x.tif", "s3://b/x.tif", "gs://b/x.tif"):
        assert absolute_href(kept, item_file) == kept
    # GDAL does not decode file URIs: the cube's href hook turns them into paths
    assert file_uri_to_path((tmp_path / "a b" / "é.tif").as_uri()) == str(tmp_path / "a b" / "é.tif")
    assert file_uri_to_path("https://h/a%20b.tif") == "https://h/a%20b.tif"


def test_hrefs_into_the_search_server_are_refused(tmp_path: Path, monkeypatch, caplog) -> None:
    """Without making hrefs absolute before serving (the old behaviour), the bare path resolves
    against the temporary server: the search stops with a clear error and writes nothing."""
    item = pystac.Item.from_dict(item_dict("bad", "2021-03-01", {"red": {"href": "/data/scenes/x_red.tif"}}))
    item.set_self_href("http://127.0.0.1:4321/collections/mine/items/bad")
    with pytest.raises(StacError) as err:
        check_no_server_hrefs([item], "http://127.0.0.1:4321", folder="cat")
    msg = str(err.value)
    for part in ("item bad asset 'red'", "'/data/scenes/x_red.tif'", "http://127.0.0.1:4321/data/scenes/x_red.tif",
                 "stops when the search ends", "absolute path", "cat/items/*.json"):
        assert part in msg, (part, msg)

    import pipeline.stac.server as server_module

    monkeypatch.setattr(server_module, "absolutize_item", lambda d, path: d)
    write_tif(tmp_path / "scenes" / "x_red.tif", np.ones((SIZE, SIZE), np.uint16))
    catalog = write_catalog(tmp_path / "catalog", [
        item_dict("bad", "2021-03-01", {"red": {"href": str(tmp_path / "scenes" / "x_red.tif")}})])
    code, items_json = search(catalog, tmp_path)
    assert code == 2 and not items_json.exists()
    assert "resolve against the temporary search server" in caplog.text


# --------------------------------------------------------------------------- NaN / inf nodata


def test_nan_nodata_float_assets(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    items = []
    for i, date in enumerate(["2021-03-01", "2021-03-17"]):
        red = np.full((SIZE, SIZE), 0.25 + i / 100, np.float32)
        red[4, 4] = np.nan
        write_tif(scenes / f"f{i}_red.tif", red, nodata=float("nan"))
        write_tif(scenes / f"f{i}_nir.tif", np.full((SIZE, SIZE), 0.5, np.float32), nodata=float("nan"))
        band = {"data_type": "float32", "nodata": "nan"}
        items.append(item_dict(f"f{i}", date, {b: {"href": f"../../scenes/f{i}_{b}.tif", "raster:bands": [band]}
                                               for b in ("red", "nir")}))
    code, items_json = search(write_catalog(tmp_path / "catalog", items), tmp_path)
    assert code == 0
    code, out = cube(items_json, tmp_path, NO_QA)
    assert code == 0
    ds = xr.open_zarr(out)
    np.testing.assert_allclose(at(ds, "reflectance", 8, 8, band="red"), [0.25, 0.26], rtol=1e-6)
    assert np.isnan(at(ds, "reflectance", 4, 4, band="red")).all() and not at(ds, "valid", 4, 4).any()
    assert ds.attrs["scaling"]["red"] == [1.0, 0.0, "nan"]


def test_nan_and_inf_nodata_agree_and_mask() -> None:
    def item(i: int, nodata: object) -> pystac.Item:
        return pystac.Item.from_dict(item_dict(f"i{i}", "2021-03-01", {"red": {
            "href": "x.tif", "raster:bands": [{"data_type": "float32", "nodata": nodata}]}}))

    sensor = SensorOptions(bands={"red": BandSource("red")}, qa=None)
    scaling = resolve_scaling([item(0, "nan"), item(1, float("nan")), item(2, "NaN")], sensor)
    assert math.isnan(scaling["red"].nodata)
    assert resolve_scaling([item(0, "-inf"), item(1, float("-inf"))], sensor)["red"].nodata == -math.inf
    assert parse_nodata("inf", where="x") == math.inf
    with pytest.raises(CubeError) as err:
        resolve_scaling([item(0, "nan"), item(1, "inf")], sensor)
    assert "disagree" in str(err.value) and "nodata nan" in str(err.value) and "nodata inf" in str(err.value)
    with pytest.raises(CubeError) as err:
        resolve_scaling([item(0, "none")], sensor)
    assert "item i0 asset 'red'" in str(err.value) and "'none'" in str(err.value) and "sensor.scaling" in str(err.value)

    dn = xr.DataArray(np.array([1.0, np.inf, np.nan, -np.inf], np.float32))
    assert missing_dn(dn, math.inf).values.tolist() == [False, True, True, False]
    assert missing_dn(dn, math.nan).values.tolist() == [False, False, True, False]
    assert missing_dn(xr.DataArray(np.array([0, 5], np.uint16)), 0.0).values.tolist() == [True, False]


# --------------------------------------------------------------------------- multi-band files


@pytest.fixture
def multiband_catalog(tmp_path: Path):
    """Two dates; per date one 3-band file (blue, red, nir: scale per band) and one single-band swir."""
    scenes = tmp_path / "scenes"
    items = []
    bands = [{"data_type": "uint16", "nodata": 0, "scale": 1e-4, "offset": 0.0},
             {"data_type": "uint16", "nodata": 0, "scale": 2e-4, "offset": -0.1},
             {"data_type": "uint16", "nodata": 0, "scale": 1e-3, "offset": 0.0}]
    for i, date in enumerate(["2021-07-01", "2021-07-09"]):
        data = np.stack([np.full((SIZE, SIZE), v + i, np.uint16) for v in (500, 1500, 400)])
        data[1, 4, 5] = 0
        write_tif(scenes / f"{date}_image.tif", data, nodata=0)
        write_tif(scenes / f"{date}_swir.tif", np.full((SIZE, SIZE), 2000 + i, np.uint16), nodata=0)
        items.append(item_dict(f"m{i}", date, {
            "image": {"href": f"../../scenes/{date}_image.tif", "raster:bands": bands},
            "swir": {"href": f"../../scenes/{date}_swir.tif", "raster:bands": [SR]}}))
    return write_catalog(tmp_path / "catalog", items)


MULTI = {"bands": {"red": {"asset": "image", "band": 2}, "nir": {"asset": "image", "band": 3}, "swir": "swir"},
         "qa": None}


def test_multiband_asset_bands_with_their_own_scaling(multiband_catalog, tmp_path: Path) -> None:
    code, items_json = search(multiband_catalog, tmp_path)
    assert code == 0
    code, out = cube(items_json, tmp_path, MULTI)
    assert code == 0
    ds = xr.open_zarr(out)
    assert list(ds.band.values) == ["red", "nir", "swir"]
    np.testing.assert_allclose(at(ds, "reflectance", 8, 8, band="red"), [1500 * 2e-4 - 0.1, 1501 * 2e-4 - 0.1],
                               rtol=1e-5)
    np.testing.assert_allclose(at(ds, "reflectance", 8, 8, band="nir"), [0.400, 0.401], rtol=1e-5)
    np.testing.assert_allclose(at(ds, "reflectance", 8, 8, band="swir"), [0.2000, 0.2001], rtol=1e-5)
    assert np.isnan(at(ds, "reflectance", 4, 5, band="red")).all() and not at(ds, "valid", 4, 5).any()
    assert ds.attrs["band_sources"] == {"red": "image.2", "nir": "image.3", "swir": "swir"}

    # the next stage takes a cube without 'qa': features keep the cube's validity
    from pipeline import features as features_stage

    feats = tmp_path / "res" / "features.zarr"
    assert features_stage.main(["--cube", str(out), "--out", str(feats), "--options",
                                json.dumps({"stem": "gabor", "pca_components": 3, "chunk": 16})]) == 0
    f = xr.open_zarr(feats)
    np.testing.assert_array_equal(f.valid.values, ds.valid.values)
    assert f.sizes["channel"] > 3 and np.isfinite(f.features.values[:, :, 3, 3].astype(np.float32)).all()


def test_multiband_band_beyond_the_file_names_asset_count_and_key(multiband_catalog, tmp_path: Path,
                                                                   caplog) -> None:
    code, items_json = search(multiband_catalog, tmp_path)
    assert code == 0
    sensor = {**MULTI, "bands": {**MULTI["bands"], "nir": {"asset": "image", "band": 8}}}
    code, out = cube(items_json, tmp_path, sensor)
    assert code == 2 and not out.exists()
    for part in ("asset 'image' lists 3 bands in raster:bands", "band 8", "sensor.bands.nir.band", "1 to 3"):
        assert part in caplog.text, part


# --------------------------------------------------------------------------- config


def test_sensor_config_forms_and_errors() -> None:
    sensor = SensorOptions.from_options({"bands": {"red": {"asset": "image", "band": 4}, "swir": "swir"}, "qa": None})
    assert sensor.qa is None and sensor.load_names == ["image.4", "swir"] and sensor.asset_keys == ["image", "swir"]
    assert SensorOptions.from_options({}).load_names[-1] == "qa_pixel"  # the default keeps Landsat QA_PIXEL
    for bad, parts in [
        ({"bands": {"red": {"asset": "image", "band": 0}}}, ["sensor.bands.red.band", "1 = first band"]),
        ({"bands": {"red": {"asset": "image"}}}, ["sensor.bands.red.band", "None"]),
        ({"bands": {"red": {"asset": "image", "bands": 2}}}, ["sensor.bands.red.bands", "did you mean 'band'"]),
        ({"bands": {"red": {"asset": "qa", "band": 1}}, "qa": {"asset": "qa"}}, ["sensor.qa.asset 'qa'", "sensor.qa: null"]),
    ]:
        with pytest.raises(ConfigError) as err:
            SensorOptions.from_options(bad)
        for part in parts:
            assert part in str(err.value), (part, str(err.value))

    bare = pystac.Item.from_dict(item_dict("bare", "2021-03-01", {"image": {"href": "x.tif"}}))
    assert band_index_problems(bare, SensorOptions.from_options({"bands": {"red": {"asset": "image", "band": 1}},
                                                                 "qa": None})) == []
    (problem,) = band_index_problems(bare, sensor := SensorOptions.from_options(
        {"bands": {"red": {"asset": "image", "band": 2}}, "qa": None}))
    assert "item bare asset 'image' has no raster:bands list" in problem and "sensor.bands.red.band" in problem
    assert sensor.multiband_assets == {"image"}

    config = load_config(REPO / "config.yaml")
    config["sensor"] = {"bands": {"red": {"asset": "image", "band": 4}, "nir": "nir"}, "qa": None}
    assert check_config(config)["sensor"]["qa"] is None
    config["sensor"] = {"bands": {"red": {"asset": "image", "band": 0}}}
    with pytest.raises(ConfigError) as err:
        check_config(config)
    assert "sensor.bands.red" in str(err.value) and "{asset: KEY, band: N} with N >= 1" in str(err.value)
