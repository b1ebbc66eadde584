"""COG writers, PAM sidecar, QGIS style and STAC item of the map outputs."""

from __future__ import annotations

import ctypes
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from pyproj import Transformer
from pystac.extensions.classification import ClassificationExtension
from pystac.extensions.projection import ProjectionExtension
from rio_cogeo.cogeo import cog_validate

from pipeline.errors import ConfigError, GridError, PredictionError
from pipeline.raster.cog import (
    write_class_cog,
    write_confidence_cog,
    write_count_cog,
    write_probability_cog,
)
from pipeline.raster.map_item import MAP_ASSETS, map_stac_item, write_map_item
from pipeline.raster.qgis_style import write_qml
from pipeline.reference.classes import as_class_table

CLASSES = [
    {"id": 1, "name": "cultivated", "color": "#e6c34a"},
    {"id": 2, "name": "forest", "color": "#1b7837"},
    {"id": 3, "name": "construction", "color": "#d6604d"},
    {"id": 4, "name": "water", "color": "#2166ac"},
    {"id": 5, "name": "cloud", "color": "#f0f0f0"},
    {"id": 6, "name": "shadow", "color": "#5a5a5a"},
]
RGB = {c["id"]: tuple(int(c["color"][i : i + 2], 16) for i in (1, 3, 5)) for c in CLASSES}
CRS = "EPSG:32649"
TRANSFORM = Affine(30.0, 0.0, 600000.0, 0.0, -30.0, 3400020.0)
# 700 > 512 columns: the COG driver adds exactly one overview level (factor 2: 300 x 350).
SHAPE = (600, 700)


def _grid_kw() -> dict[str, object]:
    return {"crs": CRS, "transform": TRANSFORM}


def _assert_cog(path: Path, *, dtype: str, nodata: float, count: int) -> None:
    valid, errors, _warnings = cog_validate(str(path))
    assert valid and not errors, errors
    with rasterio.open(path) as src:
        assert src.dtypes == (dtype,) * count
        assert src.nodata == nodata
        assert src.crs.to_epsg() == 32649
        assert src.transform == TRANSFORM
        assert src.shape == SHAPE
        assert src.block_shapes[0] == (512, 512)
        assert src.compression.value == "DEFLATE"
        assert src.overviews(1) == [2]


def _read_overview(path: Path) -> np.ndarray:
    with rasterio.open(path, overview_level=0) as ov:
        assert ov.shape == (SHAPE[0] // 2, SHAPE[1] // 2)
        return ov.read()


def _libgdal() -> ctypes.CDLL:
    """The GDAL library rasterio itself loaded (found in this process's memory maps)."""
    import rasterio._base  # noqa: F401  (loads libgdal and its dependencies)

    maps = Path("/proc/self/maps").read_text()
    paths = sorted({m for m in re.findall(r"(/\S*libgdal[^/\s]*\.so[^/\s]*)", maps)})
    assert paths, "rasterio's libgdal is not mapped into this process"
    lib = ctypes.CDLL(paths[0])
    lib.GDALAllRegister()
    for name, res, args in [
        ("GDALOpen", ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int]),
        ("GDALClose", None, [ctypes.c_void_p]),
        ("GDALGetMetadata", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]),
        ("GDALGetRasterBand", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int]),
        ("GDALGetRasterCategoryNames", ctypes.POINTER(ctypes.c_char_p), [ctypes.c_void_p]),
        ("GDALGetDefaultRAT", ctypes.c_void_p, [ctypes.c_void_p]),
        ("GDALRATGetRowCount", ctypes.c_int, [ctypes.c_void_p]),
        ("GDALRATGetColumnCount", ctypes.c_int, [ctypes.c_void_p]),
        ("GDALRATGetNameOfCol", ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_int]),
        ("GDALRATGetValueAsString", ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]),
    ]:
        getattr(lib, name).restype = res
        getattr(lib, name).argtypes = args
    return lib


def _gdal_categories(path: Path) -> tuple[list[str], list[list[str]]]:
    """Category names and RAT (header + rows) of band 1 as GDAL reads them."""
    lib = _libgdal()
    ds = lib.GDALOpen(str(path).encode(), 0)
    assert ds, f"GDAL cannot open {path}"
    try:
        lib.GDALGetMetadata(ds, None)  # GTiff loads the PAM sidecar lazily
        band = lib.GDALGetRasterBand(ds, 1)
        p = lib.GDALGetRasterCategoryNames(band)
        names: list[str] = []
        while p and p[len(names)] is not None:
            names.append(p[len(names)].decode())
        rat = lib.GDALGetDefaultRAT(band)
        assert rat, "GDAL found no raster attribute table"
        ncol = lib.GDALRATGetColumnCount(rat)
        table = [[lib.GDALRATGetNameOfCol(rat, c).decode() for c in range(ncol)]]
        for r in range(lib.GDALRATGetRowCount(rat)):
            table.append([lib.GDALRATGetValueAsString(rat, r, c).decode() for c in range(ncol)])
        return names, table
    finally:
        lib.GDALClose(ds)


@pytest.fixture(scope="module")
def class_map() -> np.ndarray:
    """Every 2x2 block holds three pixels of class a and one of class b != a (random corner).

    MODE gives a; AVERAGE would give round((3a + b) / 4), another class in most blocks.
    """
    rng = np.random.default_rng(7)
    by, bx = SHAPE[0] // 2, SHAPE[1] // 2
    a = rng.integers(1, 7, size=(by, bx))
    b = (a - 1 + rng.integers(1, 6, size=(by, bx))) % 6 + 1
    arr = np.repeat(np.repeat(a, 2, 0), 2, 1).astype(np.uint8)
    corner = rng.integers(0, 4, size=(by, bx))
    yy, xx = np.nonzero(np.ones((by, bx), bool))
    arr[2 * yy + corner.ravel() // 2, 2 * xx + corner.ravel() % 2] = b.ravel()
    arr[:2, :2] = 0  # a nodata block
    arr[2:4, :2] = [[0, 0], [0, 3]]  # mostly nodata: MODE ignores nodata
    return arr


@pytest.fixture(scope="module")
def class_cog(tmp_path_factory: pytest.TempPathFactory, class_map: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("classes") / "classes.tif"
    return write_class_cog(class_map, path, class_table=CLASSES, **_grid_kw())


def test_class_cog_values_grid_colormap(class_cog: Path, class_map: np.ndarray) -> None:
    _assert_cog(class_cog, dtype="uint8", nodata=0, count=1)
    assert sorted(p.name for p in class_cog.parent.iterdir()) == ["classes.tif", "classes.tif.aux.xml"]
    with rasterio.open(class_cog) as src:
        np.testing.assert_array_equal(src.read(1), class_map)
        cmap = src.colormap(1)
    assert cmap[0][3] == 0  # nodata transparent
    for cid, rgb in RGB.items():
        assert cmap[cid] == (*rgb, 255)


def test_class_cog_overviews_are_mode(class_cog: Path, class_map: np.ndarray) -> None:
    ov = _read_overview(class_cog)[0]
    blocks = class_map.reshape(SHAPE[0] // 2, 2, SHAPE[1] // 2, 2).transpose(0, 2, 1, 3).reshape(*ov.shape, 4)
    counts = np.stack([(blocks == v).sum(-1) for v in range(7)], -1)
    counts[..., 0] = 0  # nodata does not vote
    mode = np.where(counts.max(-1) > 0, counts.argmax(-1), 0)
    np.testing.assert_array_equal(ov, mode)
    assert ov[0, 0] == 0 and ov[1, 0] == 3
    average = np.rint(blocks.mean(-1))
    assert (average != mode).mean() > 0.5  # the test image tells MODE from AVERAGE


def test_class_categories_in_pam_sidecar(class_cog: Path) -> None:
    root = ET.parse(str(class_cog) + ".aux.xml").getroot()
    band = root.find("PAMRasterBand[@band='1']")
    assert band is not None
    names = [c.text or "" for c in band.iter("Category")]
    assert names == ["", "cultivated", "forest", "construction", "water", "cloud", "shadow"]
    rows = [[f.text for f in row.findall("F")] for row in band.iter("Row")]
    assert rows == [[str(c["id"]), c["name"], *map(str, RGB[c["id"]]), "255"] for c in CLASSES]
    # GDAL itself (rasterio's libgdal) reads the sidecar with the raster.
    gdal_names, table = _gdal_categories(class_cog)
    assert gdal_names == names
    assert table[0] == ["Value", "Name", "Red", "Green", "Blue", "Alpha"]
    assert table[1:] == rows


def test_probability_cog_percent_average_overviews(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    pct = rng.integers(0, 101, size=(3, *SHAPE))
    prob = (pct / 100.0).astype(np.float32)
    prob[1, 5, 7] = np.nan
    table = CLASSES[:3]
    path = write_probability_cog(prob, tmp_path / "probabilities.tif", class_table=table, **_grid_kw())
    _assert_cog(path, dtype="uint8", nodata=255, count=3)
    with rasterio.open(path) as src:
        data = src.read()
        assert src.descriptions == ("cultivated", "forest", "construction")
    expected = pct.astype(np.uint8)
    expected[1, 5, 7] = 255
    np.testing.assert_array_equal(data, expected)
    ov = _read_overview(path).astype(float)
    blocks = pct.reshape(3, SHAPE[0] // 2, 2, SHAPE[1] // 2, 2).astype(float)
    mean = blocks.mean(axis=(2, 4))
    mean[1, 2, 3] = np.mean([pct[1, 4, 6], pct[1, 5, 6], pct[1, 4, 7]])  # nodata excluded
    assert np.abs(ov - mean).max() <= 0.5 + 1e-9
    assert (ov != blocks[:, :, 0, :, 0]).mean() > 0.9  # not nearest neighbour


def test_confidence_and_count_cogs(tmp_path: Path) -> None:
    conf = np.full(SHAPE, 0.875, dtype=np.float32)
    conf[0, :10] = np.nan
    path = write_confidence_cog(conf, tmp_path / "confidence.tif", **_grid_kw())
    _assert_cog(path, dtype="uint8", nodata=255, count=1)
    with rasterio.open(path) as src:
        c = src.read(1)
    assert (c[0, :10] == 255).all() and (c[1:] == 88).all()

    counts = np.arange(SHAPE[0] * SHAPE[1], dtype=np.int64).reshape(SHAPE) % 40
    counts[3, 3] = -1
    path = write_count_cog(counts, tmp_path / "valid_count.tif", **_grid_kw())
    _assert_cog(path, dtype="uint16", nodata=65535, count=1)
    with rasterio.open(path) as src:
        got = src.read(1)
    expected = counts.astype(np.uint16)
    expected[3, 3] = 65535
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(PredictionError, match="65535"):
        write_count_cog(np.full((4, 4), 70000), tmp_path / "bad.tif", **_grid_kw())


def test_bad_inputs_raise_clear_errors_and_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "x.tif"
    with pytest.raises(PredictionError, match=r"ids \[9\]"):
        write_class_cog(np.full((8, 8), 9, np.uint8), out, class_table=CLASSES, **_grid_kw())
    with pytest.raises(PredictionError, match="integer"):
        write_class_cog(np.ones((8, 8), np.float32), out, class_table=CLASSES, **_grid_kw())
    with pytest.raises(PredictionError, match=r"\[0, 1\]"):
        write_probability_cog(np.full((6, 8, 8), 1.5, np.float32), out, class_table=CLASSES, **_grid_kw())
    with pytest.raises(PredictionError, match="6 classes"):
        write_probability_cog(np.zeros((2, 8, 8), np.float32), out, class_table=CLASSES, **_grid_kw())
    with pytest.raises(GridError, match="CRS"):
        write_confidence_cog(np.zeros((8, 8), np.float32), out, crs="EPSG:nope", transform=TRANSFORM)
    with pytest.raises(GridError, match="degenerate"):
        write_confidence_cog(np.zeros((8, 8), np.float32), out, crs=CRS, transform=(0, 0, 0, 0, 0, 0))
    with pytest.raises(ConfigError, match="more than once"):
        as_class_table([*CLASSES, {"id": 1, "name": "again", "color": "#000000"}])
    with pytest.raises(ConfigError, match="colour"):
        as_class_table([{"id": 1, "name": "a", "color": "red"}])
    with pytest.raises(ConfigError, match="1..254"):
        as_class_table([{"id": 0, "name": "a", "color": "#000000"}])
    with pytest.raises(ConfigError, match=r"1\.\.254: 255 is the nodata value .* renumber the class"):
        as_class_table([{"id": 255, "name": "a", "color": "#000000"}])
    assert list(tmp_path.iterdir()) == []


def test_class_table_objects_are_accepted() -> None:
    class Table:
        def ids(self) -> list[int]:
            return [1, 2]

        def names(self) -> list[str]:
            return ["a", "b"]

        colors = ["#010203", (4, 5, 6)]

    entries = as_class_table(Table())
    assert [(e.id, e.name, e.rgba, e.hex) for e in entries] == [
        (1, "a", (1, 2, 3, 255), "010203"),
        (2, "b", (4, 5, 6, 255), "040506"),
    ]
    # The pipeline's own ClassTable (iterable of objects with id, name, color).
    from pipeline.reference.classes import ClassTable

    assert as_class_table(ClassTable.from_config(CLASSES)) == as_class_table(CLASSES)
    assert [e.rgba[:3] for e in as_class_table(CLASSES)] == [RGB[c["id"]] for c in CLASSES]


def test_atomic_write_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arr = np.ones((16, 16), np.uint8)
    real_copy = rasterio.shutil.copy

    def copy_then_fail(*args: object, **kwargs: object) -> None:
        real_copy(*args, **kwargs)  # the temporary COG is complete on disk ...
        raise OSError("disk full")  # ... when the write fails

    monkeypatch.setattr(rasterio.shutil, "copy", copy_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_class_cog(arr, tmp_path / "classes.tif", class_table=CLASSES, **_grid_kw())
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(rasterio.shutil, "copy", real_copy)

    # An earlier output survives a failed rewrite untouched; a successful rewrite of a
    # raster without sidecar removes a stale sidecar.
    final = write_confidence_cog(np.zeros((16, 16), np.float32), tmp_path / "c.tif", **_grid_kw())
    before = final.read_bytes()
    monkeypatch.setattr(rasterio.shutil, "copy", copy_then_fail)
    with pytest.raises(OSError):
        write_confidence_cog(np.ones((16, 16), np.float32), final, **_grid_kw())
    assert final.read_bytes() == before
    monkeypatch.setattr(rasterio.shutil, "copy", real_copy)
    Path(str(final) + ".aux.xml").write_text("<PAMDataset/>")
    write_confidence_cog(np.ones((16, 16), np.float32), final, **_grid_kw())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tif"]


def test_qml_lists_every_class(tmp_path: Path) -> None:
    table = [*CLASSES, {"id": 7, "name": "bare & <rock>", "color": "#aabbcc"}]
    path = write_qml(tmp_path / "classes.qml", table)
    assert path.read_text().startswith("<!DOCTYPE qgis")
    root = ET.parse(path).getroot()
    assert root.tag == "qgis"
    renderer = root.find("pipe/rasterrenderer")
    assert renderer is not None and renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = [(int(e.get("value", -1)), e.get("color"), e.get("label"), e.get("alpha"))
               for e in renderer.iter("paletteEntry")]
    assert entries == [(c["id"], c["color"], c["name"], "255") for c in table]
    assert [p.name for p in tmp_path.iterdir()] == ["classes.qml"]


def test_map_stac_item(tmp_path: Path) -> None:
    small = (SHAPE[0] // 50, SHAPE[1] // 50)
    for name in ("classes.tif", "probabilities.tif", "confidence.tif", "valid_count.tif", "classes.qml"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(PredictionError, match="missing.tif"):
        map_stac_item(tmp_path, item_id="x", map_datetime="2021-07-01", crs=CRS, transform=TRANSFORM,
                      shape=small, class_table=CLASSES, assets={"classes": "missing.tif"})
    item = map_stac_item(
        tmp_path, item_id="demo-semi_lstm", map_datetime="2021-07-01", crs=CRS, transform=TRANSFORM,
        shape=small, class_table=CLASSES, start_datetime="2021-01-01", end_datetime="2021-12-31",
        properties={"pipeline:model": "semi_lstm"},
    )
    path = write_map_item(item, tmp_path / "item.json")
    doc = json.loads(path.read_text())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    back = pystac.Item.from_dict(doc)
    assert back.id == "demo-semi_lstm"
    assert back.datetime is not None and back.datetime.isoformat() == "2021-07-01T00:00:00+00:00"
    assert doc["properties"]["start_datetime"] == "2021-01-01T00:00:00Z"
    proj = ProjectionExtension.ext(back)
    assert proj.code == CRS and proj.shape == list(small)
    assert proj.transform == [30.0, 0.0, 600000.0, 0.0, -30.0, 3400020.0]
    # bbox/geometry in lon/lat, checked against pyproj on the grid corners.
    to_ll = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    xs = [600000.0, 600000.0 + 30 * small[1]]
    ys = [3400020.0 - 30 * small[0], 3400020.0]
    lons, lats = to_ll.transform([xs[0], xs[1], xs[0], xs[1]], [ys[0], ys[0], ys[1], ys[1]])
    assert back.bbox == pytest.approx([min(lons), min(lats), max(lons), max(lats)], abs=1e-6)
    ring = doc["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) > 5
    assert set(back.assets) == set(MAP_ASSETS)
    for key, meta in MAP_ASSETS.items():
        asset = back.assets[key]
        assert asset.href == meta.filename
        assert asset.media_type == meta.media_type and asset.roles == list(meta.roles)
    assert back.assets["classes"].media_type == "image/tiff; application=geotiff; profile=cloud-optimized"
    classes = ClassificationExtension.ext(back.assets["classes"]).classes
    assert classes is not None
    assert [(c.value, c.name, c.color_hint) for c in classes] == [
        (c["id"], c["name"], c["color"][1:].upper()) for c in CLASSES
    ]
    assert doc["assets"]["probabilities"]["raster:bands"][0]["nodata"] == 255
    assert len(doc["assets"]["probabilities"]["raster:bands"]) == len(CLASSES)
    assert any("classification" in e for e in back.stac_extensions)
