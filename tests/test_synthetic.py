"""Tests of the synthetic offline demo (pipeline.synthetic): values, not just shapes."""

from __future__ import annotations

import urllib.parse

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pyproj import Transformer
from rio_cogeo.cogeo import cog_validate
from scipy.signal import fftconvolve

from pipeline.errors import ConfigError
from pipeline.synthetic import DEMO_CLASSES, DemoSpec, demo_grid, generate_demo_catalog
from pipeline.synthetic.clouds import make_atmosphere, shadow_shift
from pipeline.synthetic.landscape import CROP_NAMES, class_map_at
from pipeline.synthetic.qa import (
    CIRRUS, CLEAR, CLOUD, CLOUD_CONFIDENCE, CLOUD_SHADOW, DILATED_CLOUD, FILL, WATER,
    dn_to_reflectance, encode_qa_pixel, qa_bit, qa_field, reflectance_to_dn,
)
from pipeline.synthetic.scenes import demo_landscape
from pipeline.synthetic.schedule import Acquisition, SkyPlan, acquisition_schedule, solar_position
from pipeline.synthetic.spectra import crop_fractions

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PC_ITEMS = SHARED / "data" / "stac-responses" / "planetary-computer-landsat-c2-l2-items.json"
SR_KEYS = ["coastal", "blue", "green", "red", "nir08", "swir16", "swir22"]


def _pc_items() -> list[dict]:
    if not PC_ITEMS.exists():
        pytest.skip(f"real Planetary Computer items not found at {PC_ITEMS} (../shared absent)")
    return json.loads(PC_ITEMS.read_text())["features"]


def _read(path: str | Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


# ---------------------------------------------------------------- options, grid, schedule

def test_demo_classes_match_the_team_class_table() -> None:
    assert DEMO_CLASSES == (
        {"id": 1, "name": "cultivated", "color": "#e6c34a"},
        {"id": 2, "name": "forest", "color": "#1b7837"},
        {"id": 3, "name": "construction", "color": "#d6604d"},
        {"id": 4, "name": "water", "color": "#2166ac"},
        {"id": 5, "name": "cloud", "color": "#f0f0f0"},
        {"id": 6, "name": "shadow", "color": "#5a5a5a"},
    )


def test_spec_from_options_parses_and_defaults() -> None:
    assert DemoSpec.from_options({}) == DemoSpec()
    spec = DemoSpec.from_options({"seed": 7, "size": 64, "center": [112.9, 28.2], "fill_share": 0})
    assert (spec.seed, spec.size, spec.center, spec.fill_share) == (7, 64, (112.9, 28.2), 0.0)
    assert DemoSpec().epsg == 32649 and DemoSpec().center == (112.93, 28.13)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"sizee": 64}, "sizee"),
        ({"size": 8}, "size"),
        ({"size": True}, "size"),
        ({"seed": -1}, "seed"),
        ({"cloud_free_share": 1.5}, "cloud_free_share"),
        ({"start": "2021-13-01"}, "start"),
        ({"start": "2010-01-01"}, "start"),
        ({"start": "2022-01-01", "end": "2021-01-01"}, "end"),
        ({"epsg": 4326}, "epsg"),
        ({"epsg": 32650, "center": [100.0, 28.0]}, "32647"),
        ({"epsg": 32749}, "hemisphere"),
        ({"center": [1, 2, 3]}, "center"),
    ],
)
def test_spec_rejects_bad_options(options: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        DemoSpec.from_options(options)


def test_demo_grid_is_snapped_and_centred() -> None:
    grid = demo_grid(DemoSpec())
    t = grid.transform
    assert grid.epsg == 32649 and grid.crs == "EPSG:32649" and grid.shape == (256, 256)
    assert (t.a, t.b, t.d, t.e) == (30.0, 0.0, 0.0, -30.0)
    assert t.c % 30 == 15 and t.f % 30 == 15  # Landsat grid: pixel centres on multiples of 30 m
    cx, cy = t.c + 128 * 30, t.f - 128 * 30
    lon, lat = Transformer.from_crs(32649, 4326, always_xy=True).transform(cx, cy)
    assert abs(lon - 112.93) < 0.0005 and abs(lat - 28.13) < 0.0005  # within ~50 m
    minlon, minlat, maxlon, maxlat = grid.bbox_lonlat
    assert minlon < 112.93 < maxlon and minlat < 28.13 < maxlat
    assert 7600 < (maxlat - minlat) * 111_000 < 7900  # 256 px * 30 m = 7.68 km


def test_solar_position_matches_the_solstice_noon_elevation() -> None:
    # Solar noon at lon 112.93 is about 04:28 UTC; noon elevation = 90 - |lat - declination|.
    az, el = solar_position(dt.datetime(2021, 12, 21, 4, 26, tzinfo=dt.UTC), 112.93, 28.13)
    assert el == pytest.approx(90 - 28.13 - 23.44, abs=0.3)
    assert az == pytest.approx(180.0, abs=2.0)
    _, el = solar_position(dt.datetime(2021, 6, 21, 4, 30, tzinfo=dt.UTC), 112.93, 28.13)
    assert el == pytest.approx(90 - (28.13 - 23.44), abs=0.4)
    az, el = solar_position(dt.datetime(2021, 1, 5, 2, 58, tzinfo=dt.UTC), 112.93, 28.13)
    assert 140 < az < 160 and 30 < el < 40  # a morning winter overpass: sun in the SSE


def test_schedule_is_a_16_day_revisit_with_gaps_and_varied_skies() -> None:
    spec = DemoSpec()
    acqs = acquisition_schedule(spec)
    assert 30 <= len(acqs) <= 40
    dates = [a.date for a in acqs]
    assert dates == sorted(dates) and dates[0] >= spec.start_date and dates[-1] <= spec.end_date
    ref = dt.date(2021, 1, 5)
    for a in acqs:
        offset = (a.date - ref).days % 16
        assert offset == (0 if a.platform == "landsat-8" else 8)
        assert a.platform == "landsat-8" or a.date.year >= 2022
    gaps = {(b - a).days for a, b in zip(dates, dates[1:], strict=False)}
    assert len(gaps) >= 3 and max(gaps) >= 32  # irregular: some dates are missing
    covers = [a.sky.cloud_target for a in acqs]
    assert sum(c == 0 for c in covers) >= 5 and sum(c > 0.9 for c in covers) == 2
    assert any(a.sky.fill_edge != "none" for a in acqs)


# ---------------------------------------------------------------- encodings

def test_qa_encoding_gives_the_collection2_values() -> None:
    f = np.array([[False]])
    t = np.array([[True]])
    low = np.array([[1]], np.uint8)

    def enc(**kw: np.ndarray) -> int:
        args = {"fill": f, "cloud": f, "cloud_confidence": low, "dilated": f, "shadow": f, "cirrus": f, "water": f}
        args.update(kw)
        return int(encode_qa_pixel(**args)[0, 0])

    assert enc() == 21824  # clear land
    assert enc(water=t) == 21952  # clear water
    assert enc(cloud=t, dilated=t) == 22280  # high-confidence cloud
    assert enc(shadow=t) == 23888  # cloud shadow
    assert enc(dilated=t) == 21762  # dilated cloud, not clear
    assert enc(cirrus=t) == 54596  # high-confidence cirrus, still clear
    assert enc(fill=t, cloud=t) == 1
    qa = np.array([22280], np.uint16)
    assert qa_bit(qa, CLOUD)[0] and not qa_bit(qa, CLEAR)[0] and not qa_bit(qa, FILL)[0]
    assert qa_field(qa, CLOUD_CONFIDENCE)[0] == 3
    assert qa_field(np.array([21824], np.uint16), CLOUD_CONFIDENCE)[0] == 1


def test_qa_bitfields_equal_the_planetary_computer_ones() -> None:
    from pipeline.synthetic.qa import QA_PIXEL_BITFIELDS

    for item in _pc_items():
        assert item["assets"]["qa_pixel"]["classification:bitfields"] == QA_PIXEL_BITFIELDS


def test_sr_scale_offset_roundtrip() -> None:
    refl = np.array([[[0.1, -0.05]], [[0.5, 1.0]]], np.float32)
    dn = reflectance_to_dn(refl, np.array([[False, True]]))
    assert dn.dtype == np.uint16
    assert dn[0, 0, 0] == round(0.3 / 2.75e-05) == 10909
    assert dn[0, 0, 1] == 0 and dn[1, 0, 1] == 0  # fill
    back = dn_to_reflectance(dn)
    assert back[0, 0, 0] == pytest.approx(10909 * 2.75e-05 - 0.2, abs=1e-6)
    assert np.isnan(back[0, 0, 1])


# ---------------------------------------------------------------- pure generators

def test_shadow_shift_points_away_from_the_sun() -> None:
    drow, dcol = shadow_shift(135.0, 45.0, 1500.0)  # sun in the SE at 45 deg
    assert drow < 0 and dcol < 0  # shadow to the NW (rows grow southwards)
    assert math.hypot(drow, dcol) == pytest.approx(1500.0 / 30.0, abs=1.0)
    drow, dcol = shadow_shift(90.0, 60.0, 900.0)  # sun due east
    assert dcol == -round(900 * math.tan(math.radians(30)) / 30) and drow == 0


def test_atmosphere_cover_and_shadow_geometry() -> None:
    acq = Acquisition(0, dt.datetime(2021, 5, 1, 3, tzinfo=dt.UTC), "landsat-8", 120.0, 60.0,
                      SkyPlan(0.3, 1200.0, False, "none", 0.0))
    atm = make_atmosphere((96, 96), acq, np.random.default_rng(1))
    assert atm.cloud.mean() == pytest.approx(0.3, abs=0.005)
    assert not (atm.shadow & atm.cloud).any() and not (atm.dilated & atm.cloud).any()
    drow, dcol = atm.shadow_shift
    assert (drow, dcol) == shadow_shift(120.0, 60.0, 1200.0)
    rows, cols = np.nonzero(atm.shadow)
    src_r, src_c = rows - drow, cols - dcol
    inside = (src_r >= 0) & (src_r < 96) & (src_c >= 0) & (src_c < 96)
    assert inside.sum() > 20 and atm.cloud[src_r[inside], src_c[inside]].all()


def test_landscape_classes_and_growth() -> None:
    spec = DemoSpec(size=128, urban_growth=0.5)
    land = demo_landscape(spec)
    share = np.bincount(land.base_class.ravel(), minlength=5)[1:] / land.base_class.size
    cultivated, forest, construction, water = share
    assert cultivated > 0.5 and cultivated > forest > water > 0.02 and construction > 0.05
    converting = np.isfinite(land.conversion_day)
    assert (land.base_class[converting] == 1).all()
    end = class_map_at(land, 730.0)
    growth = (end == 3).sum() / (land.base_class == 3).sum() - 1.0
    assert 0.4 < growth < 0.7


def test_crop_calendars_peak_at_different_times() -> None:
    crop = np.arange(len(CROP_NAMES), dtype=np.int8)
    zeros = np.zeros(crop.size, np.float32)
    doys = np.arange(1, 366)
    green = np.stack([crop_fractions(crop, zeros, zeros + 1, float(d))[0] for d in doys])
    double, single = CROP_NAMES.index("double_rice"), CROP_NAMES.index("single_rice")
    assert doys[green[:, double].argmax()] != doys[green[:, single].argmax()]
    jul25 = crop_fractions(crop, zeros, zeros + 1, 206.0)  # between the two rice crops
    assert jul25[0][double] < 0.3 < jul25[0][single]
    assert jul25[2][double] > 0.3  # flooded paddy after transplanting the late rice


# ---------------------------------------------------------------- the default catalog

@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("demo") / "catalog"
    path = generate_demo_catalog(out, DemoSpec())
    items = [json.loads(p.read_text()) for p in sorted((path / "items").glob("*.json"))]
    items.sort(key=lambda it: it["properties"]["datetime"])
    sr = np.stack([np.stack([_read(it["assets"][k]["href"]) for k in SR_KEYS]) for it in items])
    qa = np.stack([_read(it["assets"]["qa_pixel"]["href"]) for it in items])
    labels = np.stack([_read(path / "labels" / f"{it['id']}.tif") for it in items])
    return {"path": path, "items": items, "sr": sr, "qa": qa, "labels": labels,
            "refl": dn_to_reflectance(sr)}


def test_catalog_layout_and_absolute_hrefs(catalog: dict) -> None:
    path: Path = catalog["path"]
    assert path.is_absolute() and (path / "collection.json").is_file()
    assert not list(path.parent.glob(".tmp-*"))
    items = catalog["items"]
    assert 30 <= len(items) <= 40
    assert [it["id"] for it in items] == [
        f"{'LC08' if it['properties']['platform'] == 'landsat-8' else 'LC09'}_L2SP_123040_"
        f"{it['properties']['datetime'][:10].replace('-', '')}_02_T1" for it in items
    ]
    for it in items:
        for key, asset in it["assets"].items():
            # file:// URIs: a bare absolute path would be resolved against the STAC API's URL
            assert asset["href"].startswith("file:///")
            href = Path(urllib.parse.urlparse(asset["href"]).path)
            assert href.is_absolute() and href.is_file() and path in href.parents
            suffix = "QA_PIXEL" if key == "qa_pixel" else f"SR_B{SR_KEYS.index(key) + 1}"
            assert href == path / "assets" / it["id"] / f"{it['id']}_{suffix}.TIF"
    index = json.loads((path / "labels" / "labels.json").read_text())
    assert [e["item_id"] for e in index["labels"]] == [it["id"] for it in items]
    assert index["classes"] == list(DEMO_CLASSES)


def test_cogs_are_valid_and_on_the_grid(catalog: dict) -> None:
    grid = demo_grid(DemoSpec())
    it = catalog["items"][0]
    paths = [(it["assets"][k]["href"], "uint16", 0) for k in [*SR_KEYS, "qa_pixel"]]
    paths[-1] = (paths[-1][0], "uint16", 1)
    paths.append((str(catalog["path"] / "labels" / f"{it['id']}.tif"), "uint8", 0))
    for path, dtype, nodata in paths:
        valid, errors, _ = cog_validate(path)
        assert valid, errors
        with rasterio.open(path) as src:
            assert src.dtypes[0] == dtype and src.nodata == nodata
            assert src.crs.to_epsg() == 32649 and src.transform == grid.transform
            assert src.shape == (256, 256)
    with rasterio.open(paths[-1][0]) as src:
        assert src.colormap(1)[3][:3] == (0xD6, 0x60, 0x4D)


def test_items_parse_and_follow_the_planetary_computer_structure(catalog: dict) -> None:
    pc = _pc_items()
    pc_keys = set.intersection(*(set(f["assets"]) for f in pc))
    grid = demo_grid(DemoSpec())
    for d in catalog["items"]:
        item = pystac.Item.from_dict(d)
        assert item.collection_id == "landsat-c2-l2"
        assert set(d["assets"]) == {*SR_KEYS, "qa_pixel"} and set(d["assets"]) <= pc_keys
        p = d["properties"]
        assert p["proj:epsg"] == 32649 and p["proj:code"] == "EPSG:32649"
        assert p["proj:shape"] == [256, 256] and p["proj:transform"] == list(grid.transform)[:6]
        assert p["proj:bbox"] == list(grid.bounds)
        assert p["platform"] in ("landsat-8", "landsat-9") and p["instruments"] == ["oli", "tirs"]
        assert (p["landsat:wrs_path"], p["landsat:wrs_row"]) == ("123", "040")
        assert p["landsat:collection_category"] == "T1" and 0 <= p["eo:cloud_cover"] <= 100
        assert 0 < p["view:sun_elevation"] < 90 and 0 <= p["view:sun_azimuth"] < 360
        exts = " ".join(d["stac_extensions"])
        for ext in ("projection", "raster", "/eo/", "/view/", "classification"):
            assert ext in exts
        links = {link["rel"]: link["href"] for link in d["links"]}
        assert links["collection"] == str(catalog["path"] / "collection.json")
        assert d["bbox"] == list(grid.bbox_lonlat)
        ring = d["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) == 5
    ref = pc[0]["assets"]
    mine = catalog["items"][0]["assets"]
    for key in [*SR_KEYS, "qa_pixel"]:
        assert mine[key]["raster:bands"] == ref[key]["raster:bands"]
        assert mine[key]["type"] == ref[key]["type"] and mine[key]["roles"] == ref[key]["roles"]
        if key != "qa_pixel":
            assert mine[key]["eo:bands"][0] == ref[key]["eo:bands"][0]
            assert mine[key]["description"] == ref[key]["description"]


def test_collection_extent_and_links(catalog: dict) -> None:
    d = json.loads((catalog["path"] / "collection.json").read_text())
    coll = pystac.Collection.from_dict(d)
    assert coll.id == "landsat-c2-l2"
    items = catalog["items"]
    assert d["extent"]["spatial"]["bbox"] == [items[0]["bbox"]]
    assert d["extent"]["temporal"]["interval"] == [[items[0]["properties"]["datetime"],
                                                   items[-1]["properties"]["datetime"]]]
    assert sorted(link["href"] for link in d["links"] if link["rel"] == "item") == sorted(
        str(catalog["path"] / "items" / f"{it['id']}.json") for it in items)
    assert set(d["item_assets"]) == {*SR_KEYS, "qa_pixel"}


def test_qa_labels_and_pixels_agree(catalog: dict) -> None:
    sr, qa, labels = catalog["sr"], catalog["qa"], catalog["labels"]
    fill = qa == 1
    assert fill.any() and (fill == (labels == 0)).all() and (fill[:, None] == (sr == 0)).all()
    valid = ~fill
    cloud, dilated, shadow = qa_bit(qa, CLOUD), qa_bit(qa, DILATED_CLOUD), qa_bit(qa, CLOUD_SHADOW)
    assert ((labels == 5) == (cloud & valid)).all()
    assert ((labels == 6) == (shadow & ~cloud & valid)).all()
    assert (qa_bit(qa, CLEAR)[valid] == ~(cloud | dilated)[valid]).all()
    assert (labels[qa_bit(qa, WATER) & valid & ~shadow] == 4).all()
    cirrus = qa_bit(qa, CIRRUS)
    plain = valid & ~cloud & ~dilated & ~shadow & ~cirrus & (qa_field(qa, CLOUD_CONFIDENCE) == 1)
    assert (qa[plain & (labels == 4)] == 21952).all() and (qa[plain & (labels == 1)] == 21824).all()
    assert (qa[cloud & valid & ~cirrus] == 22280).all() and (qa[cloud & valid & cirrus] == 55052).all()
    covers = []
    for i, it in enumerate(catalog["items"]):
        share = 100.0 * cloud[i][valid[i]].mean()
        assert share == pytest.approx(it["properties"]["eo:cloud_cover"], abs=1.0)
        covers.append(share)
    assert min(covers) == 0 and max(covers) > 90 and any(5 < c < 60 for c in covers)


def test_reflectance_is_realistic_per_class(catalog: dict) -> None:
    refl, qa, labels = catalog["refl"], catalog["qa"], catalog["labels"]
    b = {k: i for i, k in enumerate(SR_KEYS)}
    clear = qa_bit(qa, CLEAR) & ~qa_bit(qa, CLOUD_SHADOW) & ~qa_bit(qa, CIRRUS) & (qa != 1)
    months = np.array([int(it["properties"]["datetime"][5:7]) for it in catalog["items"]])
    summer = np.isin(months, [6, 7, 8])[:, None, None]
    forest = clear & (labels == 2) & summer
    nir, red = refl[:, b["nir08"]], refl[:, b["red"]]
    assert forest.sum() > 1000
    assert np.median(nir[forest]) > 3 * np.median(red[forest])
    ndvi = (nir[forest] - red[forest]) / (nir[forest] + red[forest])
    assert np.median(ndvi) > 0.7
    water = clear & (labels == 4)
    assert np.median(nir[water]) < 0.05 and np.median(refl[:, b["swir16"]][water]) < 0.03
    built = clear & (labels == 3)
    swir = refl[:, b["swir16"]]
    assert np.median(swir[built]) > 0.2
    assert np.median(swir[built]) > np.median(swir[clear & (labels == 2)]) + 0.05
    cloudy = qa_bit(qa, CLOUD) & (qa != 1)
    assert np.median(refl[:, b["blue"]][cloudy]) > 0.3 > np.median(refl[:, b["blue"]][clear])


def test_fields_have_different_ndvi_peak_dates(catalog: dict) -> None:
    land = demo_landscape(DemoSpec())
    refl, qa, labels = catalog["refl"], catalog["qa"], catalog["labels"]
    clear = qa_bit(qa, CLEAR) & ~qa_bit(qa, CLOUD_SHADOW) & ~qa_bit(qa, CIRRUS) & (labels == 1)
    ndvi = (refl[:, 4] - refl[:, 3]) / (refl[:, 4] + refl[:, 3])
    year = np.array([it["properties"]["datetime"][:4] == "2021" for it in catalog["items"]])
    peaks = {}
    for pid in np.unique(land.parcel[land.parcel >= 0])[:200]:
        px = land.parcel == pid
        if px.sum() < 30:
            continue
        series = np.array([ndvi[t][px & clear[t]].mean() if (px & clear[t]).sum() > 10 else np.nan
                           for t in range(len(year))])
        series[~year] = np.nan
        if np.isfinite(series).sum() > 8:
            peaks[int(pid)] = int(np.nanargmax(series))
    assert len(peaks) > 20
    assert len(set(peaks.values())) >= 3


def test_construction_grows_in_the_labels(catalog: dict) -> None:
    labels = catalog["labels"]
    surface = (labels >= 1) & (labels <= 4)
    clearish = [t for t, it in enumerate(catalog["items"])
                if it["properties"]["eo:cloud_cover"] < 10 and surface[t].mean() > 0.8]
    a, z = clearish[0], clearish[-1]
    assert z - a > len(labels) // 2
    both = surface[a] & surface[z]
    first = (labels[a][both] == 3).mean()
    last = (labels[z][both] == 3).mean()
    assert last > 1.2 * first
    built_before = np.zeros(labels.shape[1:], bool)
    for t in range(labels.shape[0]):
        assert not (built_before & surface[t] & (labels[t] != 3)).any()  # never un-built
        built_before |= labels[t] == 3


def test_shadows_lie_on_the_anti_sun_side_of_clouds(catalog: dict) -> None:
    qa = catalog["qa"]
    checked = 0
    for t, it in enumerate(catalog["items"]):
        cloud = qa_bit(qa[t], CLOUD).astype(np.float32)
        shadow = qa_bit(qa[t], CLOUD_SHADOW).astype(np.float32)
        if not (0.03 < cloud.mean() < 0.5 and shadow.mean() > 0.01):
            continue
        corr = fftconvolve(shadow, cloud[::-1, ::-1], mode="full")
        r, c = np.unravel_index(int(corr.argmax()), corr.shape)
        drow, dcol = r - (cloud.shape[0] - 1), c - (cloud.shape[1] - 1)
        bearing = math.degrees(math.atan2(dcol, -drow)) % 360  # east, north -> azimuth
        anti_sun = (it["properties"]["view:sun_azimuth"] + 180) % 360
        assert abs((bearing - anti_sun + 180) % 360 - 180) < 15, (it["id"], bearing, anti_sun)
        assert math.hypot(drow, dcol) >= 5
        checked += 1
    assert checked >= 3


def test_same_seed_same_catalog_other_seed_differs(tmp_path: Path) -> None:
    spec = DemoSpec(size=64, n_dates=5)
    paths = [generate_demo_catalog(tmp_path / name, s)
             for name, s in (("a", spec), ("b", spec), ("c", DemoSpec(size=64, n_dates=5, seed=43)))]

    def load(path: Path) -> tuple[list[str], list[np.ndarray]]:
        texts = [p.read_text().replace(str(path), "ROOT") for p in sorted((path / "items").glob("*.json"))]
        rasters = [_read(p) for p in sorted(path.rglob("*.TIF"))] + [_read(p) for p in sorted(path.rglob("*.tif"))]
        return texts, rasters

    (ta, ra), (tb, rb), (tc, rc) = (load(p) for p in paths)
    assert ta == tb and len(ra) == len(rb) == 5 * 9 + 1  # 9 rasters per date and the land-cover raster
    assert all(np.array_equal(x, y) for x, y in zip(ra, rb, strict=True))
    assert ta != tc
    assert not all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(ra, rc, strict=False))


def test_regenerating_replaces_the_catalog(tmp_path: Path) -> None:
    out = tmp_path / "cat"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    generate_demo_catalog(out, DemoSpec(size=32, n_dates=2))
    assert not (out / "stale.txt").exists() and len(list((out / "items").glob("*.json"))) == 2
    assert not list(tmp_path.glob(".tmp-*"))
