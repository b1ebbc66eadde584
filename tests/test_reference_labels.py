"""Reference labels: class table, label dates, rasters/vectors onto the cube grid, scarcity."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.warp
import xarray as xr
from affine import Affine
from rasterio.enums import Resampling
from shapely.geometry import Point, box

from pipeline.errors import ConfigError, LabelError
from pipeline.reference.build import build_labels, list_label_rasters, read_vector_layers, stack_on_cube_dates
from pipeline.reference.classes import ClassTable
from pipeline.reference.codes import LabelCodes, encode_codes
from pipeline.reference.dates import date_from_name, match_dates, parse_day
from pipeline.reference.options import LabelOptions
from pipeline.reference.rasterize import CubeGrid, grid_from_store, raster_to_grid
from pipeline.reference.scarcity import apply_scarcity, select_dates, thin_pixels

CRS_UTM = "EPSG:32649"
X0, Y0, RES = 600_000.0, 2_500_000.0, 30.0
H = W = 40
TRANSFORM = Affine(RES, 0.0, X0, 0.0, -RES, Y0)
TIMES = np.array(
    ["2021-01-05T03:10", "2021-01-21T03:10", "2021-02-06T03:10", "2021-02-22T03:10"], dtype="datetime64[ns]"
)
DEMO_CLASSES = [
    {"id": 1, "name": "cultivated", "color": "#e6c34a"},
    {"id": 2, "name": "forest", "color": "#1b7837"},
    {"id": 3, "name": "construction", "color": "#d6604d"},
    {"id": 4, "name": "water", "color": "#2166ac"},
    {"id": 5, "name": "cloud", "color": "#f0f0f0"},
    {"id": 6, "name": "shadow", "color": "#5a5a5a"},
]
TABLE = ClassTable.from_config(DEMO_CLASSES)
GRID = CubeGrid(crs=CRS_UTM, transform=TRANSFORM, shape=(H, W), times=TIMES)


def block_labels() -> np.ndarray:
    """(y, x) uint8: four class blocks and an unlabelled band (0)."""
    lab = np.zeros((H, W), dtype=np.uint8)
    lab[0:20, 0:20] = 1
    lab[0:20, 20:40] = 2
    lab[20:40, 0:25] = 3
    lab[20:40, 25:40] = 4
    lab[18:22, :] = 0
    return lab


def write_tif(path: Path, data: np.ndarray, crs: str, transform: Affine, nodata: float | None = 0) -> Path:
    with rasterio.open(
        path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
        dtype=data.dtype, crs=crs, transform=transform, nodata=nodata,
    ) as dst:
        dst.write(data, 1)
    return path


def to_4326(data: np.ndarray, *, finer: int = 1) -> tuple[np.ndarray, Affine]:
    """``data`` on GRID reprojected (nearest) to EPSG:4326 at ~the grid resolution / finer."""
    tr, w, h = rasterio.warp.calculate_default_transform(
        CRS_UTM, "EPSG:4326", W, H, X0, Y0 - H * RES, X0 + W * RES, Y0
    )
    tr = tr @ Affine.scale(1 / finer)
    out = np.zeros((h * finer, w * finer), dtype=np.uint8)
    rasterio.warp.reproject(
        data, out, src_transform=TRANSFORM, src_crs=CRS_UTM, src_nodata=0,
        dst_transform=tr, dst_crs="EPSG:4326", dst_nodata=0, resampling=Resampling.nearest,
    )
    return out, tr


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


# -- class table ---------------------------------------------------------------------------
def test_class_table_queries() -> None:
    assert TABLE.ids() == [1, 2, 3, 4, 5, 6]
    assert TABLE.names()[1] == "forest"
    assert TABLE.colors_rgb()[0] == (0xE6, 0xC3, 0x4A) and TABLE.colors()[0] == "#e6c34a"
    assert TABLE.index_of(4) == 3
    assert TABLE.name_of(2) == "forest" and TABLE.id_of("water") == 4
    assert ClassTable.from_config(TABLE.to_config()) == TABLE
    with pytest.raises(ConfigError, match="ids"):
        TABLE.index_of(9)


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ([], "empty"),
        ([{"id": 1, "name": "a", "color": "#000000"}, {"id": 1, "name": "b", "color": "#000000"}], "twice"),
        ([{"id": 1, "name": "a", "color": "#000000"}, {"id": 2, "name": "a", "color": "#000000"}], "twice"),
        ([{"id": 0, "name": "a", "color": "#000000"}], "1..254"),
        ([{"id": 255, "name": "a", "color": "#000000"}], "1..254"),
        ([{"id": 1, "name": "a", "color": "red"}], "#rrggbb"),
        ([{"id": 1, "name": "a", "color": "#00000"}], "#rrggbb"),
        ([{"id": True, "name": "a", "color": "#000000"}], "integer"),
        ([{"id": 1, "name": "a", "color": "#000000", "alpha": 1}], "alpha"),
        ([{"id": 1, "name": "a"}], "color"),
    ],
)
def test_class_table_rejects(entries: list, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ClassTable.from_config(entries)


# -- dates ---------------------------------------------------------------------------------
def test_dates_from_names_and_values() -> None:
    assert date_from_name("labels_2021-01-05.tif") == np.datetime64("2021-01-05")
    assert date_from_name("lab20210121_v2.tif") == np.datetime64("2021-01-21")
    assert date_from_name("LC08_L2SP_123040_20210105_02_T1.tif") == np.datetime64("2021-01-05")  # demo ids
    with pytest.raises(LabelError, match="several dates"):
        date_from_name("LC08_L2SP_123045_20210105_20210308_02_T1.tif")
    with pytest.raises(LabelError, match="no date"):
        date_from_name("labels_20211345.tif")  # month 13 is no date
    assert parse_day(20210206, what="x") == np.datetime64("2021-02-06")
    assert parse_day("2021-02-06T23:30:00-03:00", what="x") == np.datetime64("2021-02-07")  # UTC day


def test_match_dates_tolerance_and_unmatched() -> None:
    days = [np.datetime64("2021-01-05"), np.datetime64("2021-01-23"), np.datetime64("2021-03-30")]
    exact = match_dates(days, TIMES, tolerance_days=0)
    assert exact.cube_index == (0, -1, -1)
    assert exact.unmatched == ("2021-01-23", "2021-03-30")
    tol = match_dates(days, TIMES, tolerance_days=2)
    assert tol.cube_index == (0, 1, -1)
    with pytest.raises(LabelError, match="both match cube date 2021-01-21"):
        match_dates([np.datetime64("2021-01-20"), np.datetime64("2021-01-22")], TIMES, tolerance_days=1)


# -- rasters onto the grid -----------------------------------------------------------------
def test_raster_same_grid_is_identical(tmp_path: Path) -> None:
    lab = block_labels()
    got = raster_to_grid(write_tif(tmp_path / "l_2021-01-05.tif", lab, CRS_UTM, TRANSFORM), GRID, TABLE)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, lab)


def test_raster_nodata_255_becomes_unlabelled(tmp_path: Path) -> None:
    lab = block_labels()
    src = np.where(lab == 0, 255, lab).astype(np.uint8)
    got = raster_to_grid(write_tif(tmp_path / "l.tif", src, CRS_UTM, TRANSFORM, nodata=255), GRID, TABLE)
    np.testing.assert_array_equal(got, lab)


@pytest.mark.parametrize("finer", [1, 3])
def test_raster_in_4326_lands_on_the_right_pixels(tmp_path: Path, finer: int) -> None:
    lab = block_labels()
    geo, tr = to_4326(lab, finer=finer)
    got = raster_to_grid(write_tif(tmp_path / "l.tif", geo, "EPSG:4326", tr), GRID, TABLE)
    for cid in (1, 2, 3, 4):
        assert iou(got == cid, lab == cid) > 0.85, cid
    assert abs(int(np.count_nonzero(got)) - int(np.count_nonzero(lab))) <= 40
    # block interiors (two pixels from any edge) are exact
    assert (got[2:16, 2:18] == 1).all() and (got[2:16, 22:38] == 2).all()
    assert (got[24:38, 2:23] == 3).all() and (got[24:38, 27:38] == 4).all()
    assert (got[19:21, 5:35] == 0).all()


def test_raster_finer_uses_mode_coarser_uses_nearest(tmp_path: Path) -> None:
    # 10 m labels: every 30 m pixel holds 3x3 sub-pixels
    fine = np.zeros((H * 3, W * 3), np.uint8)
    fine[0:3, 0:3] = np.array([[1, 1, 2], [1, 2, 2], [1, 0, 0]])  # 4 x class 1, 3 x class 2 -> 1
    fine[0:3, 3:6] = np.array([[2, 2, 0], [0, 0, 0], [0, 1, 0]])  # mostly unlabelled -> 0
    fine[3:6, 0:3] = 3
    got = raster_to_grid(write_tif(tmp_path / "f.tif", fine, CRS_UTM, TRANSFORM @ Affine.scale(1 / 3)), GRID, TABLE)
    expected = np.zeros((H, W), np.uint8)
    expected[0, 0], expected[1, 0] = 1, 3
    np.testing.assert_array_equal(got, expected)
    # 60 m labels: each coarse pixel covers 2x2 cube pixels
    coarse = (np.arange(H // 2 * W // 2).reshape(H // 2, W // 2) % 4 + 1).astype(np.uint8)
    got = raster_to_grid(write_tif(tmp_path / "c.tif", coarse, CRS_UTM, TRANSFORM @ Affine.scale(2)), GRID, TABLE)
    np.testing.assert_array_equal(got, np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1))


def test_raster_unknown_class_id_names_it(tmp_path: Path) -> None:
    lab = block_labels()
    lab[5, 5] = 9
    lab[6, 6] = 77
    with pytest.raises(LabelError, match=r"\[9, 77\].*ids \[1, 2, 3, 4, 5, 6\]"):
        raster_to_grid(write_tif(tmp_path / "l.tif", lab, CRS_UTM, TRANSFORM), GRID, TABLE)


def test_raster_outside_cube_gives_both_bounds(tmp_path: Path) -> None:
    far = Affine(RES, 0.0, X0 + 100_000, 0.0, -RES, Y0)
    path = write_tif(tmp_path / "l.tif", block_labels(), CRS_UTM, far)
    cube_bounds = r"\(600000, 2.4988e\+06, 601200, 2.5e\+06\) in EPSG:32649"
    with pytest.raises(LabelError, match="does not overlap the cube bounds " + cube_bounds) as err:
        raster_to_grid(path, GRID, TABLE)
    assert "700000" in str(err.value)


def test_list_label_rasters_mapping_and_duplicates(tmp_path: Path) -> None:
    write_tif(tmp_path / "a_2021-01-21.tif", block_labels(), CRS_UTM, TRANSFORM)
    write_tif(tmp_path / "survey.tif", block_labels(), CRS_UTM, TRANSFORM)
    listed = list_label_rasters(tmp_path, dates={"survey.tif": "2021-01-05"})
    assert [(str(d), p.name) for d, p in listed] == [("2021-01-05", "survey.tif"), ("2021-01-21", "a_2021-01-21.tif")]
    with pytest.raises(LabelError, match="share the date"):
        list_label_rasters(tmp_path, dates={"survey.tif": "2021-01-21"})


# -- vectors -------------------------------------------------------------------------------
def pixel_box(r0: int, r1: int, c0: int, c1: int):  # noqa: ANN201 - shapely polygon
    """Polygon of rows r0..r1-1, cols c0..c1-1 in EPSG:32649, edges densified for reprojection."""
    return box(X0 + c0 * RES, Y0 - r1 * RES, X0 + c1 * RES, Y0 - r0 * RES).segmentize(RES / 4)


def write_vectors(path: Path) -> Path:
    gdf = gpd.GeoDataFrame(
        {
            "lc": [2, 3, 4, 1],
            "obs": ["2021-01-21", "2021-01-21", "2021-02-06", None],
            "geometry": [
                pixel_box(5, 15, 10, 25),
                pixel_box(12, 20, 20, 30),  # overlaps the forest box: later feature wins
                Point(X0 + 30.5 * RES, Y0 - 30.5 * RES),
                pixel_box(30, 35, 0, 5),  # no date: static
            ],
        },
        crs=CRS_UTM,
    ).to_crs("EPSG:4326")
    gdf.to_file(path, driver="GeoJSON")
    return path


def test_vectors_in_4326_rasterized_to_expected_pixels(tmp_path: Path) -> None:
    path = write_vectors(tmp_path / "labels.geojson")
    layers = read_vector_layers(path, GRID, TABLE, class_field="lc", date_field="obs")
    assert [str(d) for d, _ in layers.dated] == ["2021-01-21", "2021-02-06"]
    expected = np.zeros((H, W), np.uint8)
    expected[5:15, 10:25] = 2
    expected[12:20, 20:30] = 3
    np.testing.assert_array_equal(layers.dated[0][1], expected)
    point = np.zeros((H, W), np.uint8)
    point[30, 30] = 4
    np.testing.assert_array_equal(layers.dated[1][1], point)
    static = np.zeros((H, W), np.uint8)
    static[30:35, 0:5] = 1
    np.testing.assert_array_equal(layers.static, static)

    labels, unmatched = stack_on_cube_dates(layers, GRID, tolerance_days=0)
    assert unmatched == []
    np.testing.assert_array_equal(labels[0], static)  # only the static labels
    np.testing.assert_array_equal(labels[1], np.where(expected > 0, expected, static))
    np.testing.assert_array_equal(labels[2], np.where(point > 0, point, static))


def test_vectors_errors(tmp_path: Path) -> None:
    path = write_vectors(tmp_path / "labels.geojson")
    with pytest.raises(LabelError, match="no attribute 'date'.*null"):
        read_vector_layers(path, GRID, TABLE, class_field="lc", date_field="date")
    gdf = gpd.read_file(path)
    gdf.loc[0, "lc"] = 9
    gdf.to_file(tmp_path / "nine.geojson", driver="GeoJSON")
    with pytest.raises(LabelError, match=r"class ids \[9\] .*ids \[1, 2, 3, 4, 5, 6\]"):
        read_vector_layers(tmp_path / "nine.geojson", GRID, TABLE, class_field="lc", date_field="obs")
    far = gpd.GeoDataFrame({"lc": [1]}, geometry=[box(120.0, 30.0, 120.1, 30.1)], crs="EPSG:4326")
    far.to_file(tmp_path / "far.gpkg", driver="GPKG")
    with pytest.raises(LabelError, match=r"EPSG:4326.*does not overlap the cube bounds .* in EPSG:32649"):
        read_vector_layers(tmp_path / "far.gpkg", GRID, TABLE, class_field="lc", date_field=None)


def test_vector_class_names_accepted(tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame({"lc": ["water"]}, geometry=[pixel_box(0, 2, 0, 3)], crs=CRS_UTM)
    gdf.to_file(tmp_path / "n.gpkg", driver="GPKG")
    layers = read_vector_layers(tmp_path / "n.gpkg", GRID, TABLE, class_field="lc", date_field=None)
    assert layers.dated == [] and int(layers.static.sum()) == 6 * 4
    gdf.loc[0, "lc"] = "lake"
    gdf.to_file(tmp_path / "n2.gpkg", driver="GPKG")
    with pytest.raises(LabelError, match="lake"):
        read_vector_layers(tmp_path / "n2.gpkg", GRID, TABLE, class_field="lc", date_field=None)


# -- scarcity ------------------------------------------------------------------------------
def random_labels(t: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = rng.choice(np.array([1, 2, 3], np.uint8), size=(t, 20, 20), p=[0.7, 0.28, 0.02])
    lab[:, :2] = 0
    lab[:, 5, 5] = 4  # one pixel of a tiny class on every date
    return lab


@pytest.mark.parametrize(("n", "fraction"), [(7, 0.5), (10, 0.5), (36, 0.2), (36, 0.1), (10, 1.0)])
def test_date_fraction_keeps_floor(n: int, fraction: float) -> None:
    labelled = np.arange(n) * 2 + 1
    kept = select_dates(labelled, fraction=fraction, removal="chronological", seed=0)
    k = math.floor(n * fraction)
    np.testing.assert_array_equal(kept, labelled[n - k :])  # the earliest are removed
    rnd = select_dates(labelled, fraction=fraction, removal="random", seed=5)
    assert rnd.size == k and set(rnd) <= set(labelled) and np.all(np.diff(rnd) > 0)
    np.testing.assert_array_equal(rnd, select_dates(labelled, fraction=fraction, removal="random", seed=5))


def test_date_fraction_counts_labelled_dates_only() -> None:
    lab = random_labels(6)
    lab[[0, 3]] = 0  # two dates without labels: 4 labelled dates
    out, kept = apply_scarcity(lab, date_fraction=0.5)
    assert kept.tolist() == [4, 5]
    np.testing.assert_array_equal(out[4:], lab[4:])
    assert not out[:4].any()
    with pytest.raises(LabelError, match="keeps none"):
        apply_scarcity(lab, date_fraction=0.2)


def test_pixel_fraction_keeps_each_class() -> None:
    lab = random_labels(3)
    out = thin_pixels(lab, pixel_fraction=0.1, seed=1)
    for t in range(3):
        for cid in (1, 2, 3, 4):
            n = int((lab[t] == cid).sum())
            assert int((out[t] == cid).sum()) == max(1, math.floor(n * 0.1)), (t, cid)
    kept = out > 0
    np.testing.assert_array_equal(out[kept], lab[kept])  # kept pixels keep their class
    np.testing.assert_array_equal(out, thin_pixels(lab, pixel_fraction=0.1, seed=1))
    assert not np.array_equal(out, thin_pixels(lab, pixel_fraction=0.1, seed=2))
    pts = thin_pixels(lab, points_per_class=5, seed=1)
    for cid, n in ((1, 5), (2, 5), (4, 1)):
        assert int((pts[0] == cid).sum()) == min(n, int((lab[0] == cid).sum()))


# -- options and the whole build -----------------------------------------------------------
def test_options_validation() -> None:
    opts = LabelOptions.from_json('{"source": "x", "date_fraction": 0.5, "date_removal": "random", "seed": 3}')
    assert opts.date_fraction == 0.5 and opts.format == "auto" and opts.date_field == "date"
    with pytest.raises(ConfigError, match=r"unknown labels option\(s\) \['fraction'\]"):
        LabelOptions.from_mapping({"source": "x", "fraction": 0.5})
    with pytest.raises(ConfigError, match="'chronological', 'random'"):
        LabelOptions.from_mapping({"source": "x", "date_removal": "latest"})
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        LabelOptions.from_mapping({"source": "x", "date_fraction": 0})
    with pytest.raises(ConfigError, match="exclude each other"):
        LabelOptions.from_mapping({"source": "x", "pixel_fraction": 0.5, "points_per_class": 10})
    with pytest.raises(ConfigError, match="required"):
        LabelOptions.from_mapping({})


def cube_dataset() -> xr.Dataset:
    return xr.Dataset(
        {"valid": (("time", "y", "x"), np.ones((TIMES.size, H, W), bool))},
        coords={
            "time": TIMES,
            "y": Y0 - RES * (np.arange(H) + 0.5),
            "x": X0 + RES * (np.arange(W) + 0.5),
        },
        attrs={"crs": CRS_UTM, "transform": list(TRANSFORM)[:6]},
    )


def test_build_labels_from_raster_folder(tmp_path: Path) -> None:
    lab = block_labels()
    folder = tmp_path / "labels"
    folder.mkdir()
    write_tif(folder / "l_2021-01-05.tif", lab, CRS_UTM, TRANSFORM)
    write_tif(folder / "l_2021-02-07.tif", np.where(lab == 1, 2, lab).astype(np.uint8), CRS_UTM, TRANSFORM)
    write_tif(folder / "l_2022-06-01.tif", lab, CRS_UTM, TRANSFORM)  # no cube date
    cube = cube_dataset()
    assert grid_from_store(cube).shape == (H, W)
    ds = build_labels(cube, TABLE, LabelOptions(source=str(folder), date_tolerance_days=1))
    got = ds["labels"].values
    np.testing.assert_array_equal(got[0], lab)
    np.testing.assert_array_equal(got[2], np.where(lab == 1, 2, lab))
    assert not got[1].any() and not got[3].any()
    assert ds.attrs["unmatched_label_dates"] == ["2022-06-01"]
    assert ds.attrs["labelled_dates"] == ["2021-01-05", "2021-02-06"]
    half = build_labels(cube, TABLE, LabelOptions(source=str(folder), date_tolerance_days=1, date_fraction=0.5))
    assert half.attrs["labelled_dates"] == ["2021-02-06"]  # the earliest removed
    with pytest.raises(LabelError, match=r"none of the 1 label date\(s\) \(2022-06-01\) matches a cube date"):
        build_labels(cube, TABLE, LabelOptions(source=str(folder / "l_2022-06-01.tif")))


# -- source codes: ignore_values and value_map ---------------------------------------------
CROP_MAP = {1200: 1, 1300: 1, 9120: 2, 4000: 4}


def crop_codes() -> np.ndarray:
    """(y, x) uint16 source codes of block_labels: 1 -> 1200/1300 (left/right half of the block),
    2 -> 9120, 3 -> 0 (fill), 4 -> 4000, unlabelled band -> 65535 (nodata)."""
    lab = block_labels()
    codes = np.full(lab.shape, 65535, np.uint16)
    codes[lab == 1] = 1200
    codes[:, 10:][lab[:, 10:] == 1] = 1300
    codes[lab == 2] = 9120
    codes[lab == 3] = 0
    codes[lab == 4] = 4000
    return codes


def test_raster_codes_mapped_by_value_map_and_ignore_values(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "crops.tif", crop_codes(), CRS_UTM, TRANSFORM, nodata=65535)
    codes = LabelCodes(ignore_values=(0,), value_map=CROP_MAP)
    got = raster_to_grid(path, GRID, TABLE, codes=codes)
    expected = np.where(block_labels() == 3, 0, block_labels())  # code 0 (class 3 blocks) ignored
    np.testing.assert_array_equal(got, expected)
    assert got[0, 0] == 1 and got[0, 15] == 1 and got[0, 25] == 2 and got[30, 30] == 4 and got[30, 5] == 0
    # a value_map target of 0 is unlabelled too
    got0 = raster_to_grid(path, GRID, TABLE, codes=LabelCodes(ignore_values=(0,), value_map={**CROP_MAP, 9120: 0}))
    np.testing.assert_array_equal(got0, np.where(expected == 2, 0, expected))


def test_raster_unknown_code_lists_every_code_with_its_pixels(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "crops.tif", crop_codes(), CRS_UTM, TRANSFORM, nodata=65535)
    partial = LabelCodes(ignore_values=(0,), value_map={1200: 1, 1300: 1})
    with pytest.raises(LabelError) as err:
        raster_to_grid(path, GRID, TABLE, codes=partial)
    msg = str(err.value)
    lab = block_labels()
    counts = {
        0: int((lab == 3).sum()),
        1200: int((lab[:, :10] == 1).sum()),
        1300: int((lab[:, 10:] == 1).sum()),
        4000: int((lab == 4).sum()),
        9120: int((lab == 2).sum()),
    }
    assert "label raster crops.tif holds codes [4000, 9120]" in msg
    assert "codes found (pixels): " + ", ".join(f"{c}: {n}" for c, n in sorted(counts.items())) in msg
    assert "labels.value_map" in msg and "labels.ignore_values" in msg
    # without value_map: the codes must be class ids; the fixes name all three keys
    with pytest.raises(LabelError) as err:
        raster_to_grid(path, GRID, TABLE, codes=LabelCodes(ignore_values=(0,)))
    msg = str(err.value)
    assert "class ids [1200, 1300, 4000, 9120]" in msg and "1200: 180, 1300: 180" in msg
    assert all(k in msg for k in ("labels.value_map", "labels.ignore_values", "`classes`"))


def test_value_map_target_must_be_a_class_id(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "crops.tif", crop_codes(), CRS_UTM, TRANSFORM, nodata=65535)
    with pytest.raises(ConfigError, match=r"maps 9120 -> 7, but \[7\] are not class ids of `classes`"):
        raster_to_grid(path, GRID, TABLE, codes=LabelCodes(ignore_values=(0,), value_map={**CROP_MAP, 9120: 7}))


def test_raster_codes_mapped_before_mode_resampling(tmp_path: Path) -> None:
    fine = np.zeros((H * 3, W * 3), np.int16)
    # codes 11 and 12 are both class 1 (4 pixels), code 13 is class 2 (3 pixels): the mode of
    # the class ids is 1, the mode of the codes would be 13 -> class 2
    fine[0:3, 0:3] = np.array([[11, 11, 12], [12, 13, 13], [13, -1, -1]])
    fine[3:6, 3:6] = -1
    path = write_tif(tmp_path / "f.tif", fine, CRS_UTM, TRANSFORM @ Affine.scale(1 / 3), nodata=None)
    got = raster_to_grid(path, GRID, TABLE, codes=LabelCodes(ignore_values=(-1,), value_map={0: 0, 11: 1, 12: 1, 13: 2}))
    expected = np.zeros((H, W), np.uint8)
    expected[0, 0] = 1
    np.testing.assert_array_equal(got, expected)


def test_raster_in_another_utm_zone_at_finer_resolution(tmp_path: Path) -> None:
    """10 m labels in EPSG:32650 (the next UTM zone) land on the 30 m EPSG:32649 cube grid."""
    lab = block_labels()
    fine = np.repeat(np.repeat(lab, 3, axis=0), 3, axis=1)
    tr, w, h = rasterio.warp.calculate_default_transform(
        CRS_UTM, "EPSG:32650", W * 3, H * 3, X0, Y0 - H * RES, X0 + W * RES, Y0, resolution=10.0
    )
    other = np.zeros((h, w), np.uint8)
    rasterio.warp.reproject(
        fine, other, src_transform=TRANSFORM @ Affine.scale(1 / 3), src_crs=CRS_UTM, src_nodata=0,
        dst_transform=tr, dst_crs="EPSG:32650", dst_nodata=0, resampling=Resampling.nearest,
    )
    assert tr.a == 10.0 and tr.c < 0  # west of zone 50's false origin: a real other-zone grid
    got = raster_to_grid(write_tif(tmp_path / "z50.tif", other, "EPSG:32650", tr), GRID, TABLE)
    for cid in (1, 2, 3, 4):
        assert iou(got == cid, lab == cid) > 0.85, cid
    assert (got[2:16, 2:18] == 1).all() and (got[2:16, 22:38] == 2).all()
    assert (got[24:38, 2:23] == 3).all() and (got[24:38, 27:38] == 4).all()
    assert (got[19:21, 5:35] == 0).all()
    assert got[10, 10] == 1 and got[10, 30] == 2 and got[30, 10] == 3 and got[30, 32] == 4


def test_raster_partly_outside_the_grid_leaves_the_rest_unlabelled(tmp_path: Path) -> None:
    lab = block_labels()
    shifted = Affine(RES, 0.0, X0 + 25 * RES, 0.0, -RES, Y0 - 10 * RES)  # starts at row 10, col 25
    got = raster_to_grid(write_tif(tmp_path / "p.tif", lab, CRS_UTM, shifted), GRID, TABLE)
    expected = np.zeros((H, W), np.uint8)
    expected[10:, 25:] = lab[: H - 10, : W - 25]
    np.testing.assert_array_equal(got, expected)
    assert got[15, 30] == 1 and got[35, 30] == 3 and not got[:10].any() and not got[:, :25].any()


def write_plain_tif(path: Path, data: np.ndarray, **profile: object) -> Path:
    """A GeoTIFF without CRS and/or transform (what rasterio reads with NotGeoreferencedWarning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(
            path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1, dtype=data.dtype,
            **profile,
        ) as dst:
            dst.write(data, 1)
    return path


def test_raster_not_georeferenced_names_the_file_and_the_fix(tmp_path: Path) -> None:
    bare = write_plain_tif(tmp_path / "bare_2021-01-05.tif", block_labels())
    with pytest.raises(LabelError) as err:
        raster_to_grid(bare, GRID, TABLE)
    msg = str(err.value)
    assert "label raster bare_2021-01-05.tif is not georeferenced (no CRS and no geotransform" in msg
    assert "gdal_translate -a_srs EPSG:32649 -a_ullr 600000 2500000 601200 2498800 bare_2021-01-05.tif" in msg
    crs_only = write_plain_tif(tmp_path / "crs_only.tif", block_labels(), crs=CRS_UTM)
    with pytest.raises(LabelError, match=r"crs_only.tif is not georeferenced \(a CRS \(EPSG:32649\) but no geotransform"):
        raster_to_grid(crs_only, GRID, TABLE)
    no_crs = write_plain_tif(tmp_path / "no_crs.tif", block_labels(), transform=TRANSFORM)
    with pytest.raises(LabelError, match="no_crs.tif has no CRS; .*gdal_translate -a_srs EPSG:32649 no_crs.tif"):
        raster_to_grid(no_crs, GRID, TABLE)


def test_vector_codes_mapped_and_ignored(tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame(
        {"code": ["1200", "9120", "0", "water", "4000"]},
        geometry=[pixel_box(0, 2, 0, 3), pixel_box(5, 7, 5, 8), pixel_box(0, 5, 0, 5), pixel_box(10, 12, 10, 12),
                  pixel_box(20, 21, 20, 22)],
        crs=CRS_UTM,
    )
    gdf.to_file(tmp_path / "codes.gpkg", driver="GPKG")
    codes = LabelCodes(ignore_values=(0,), value_map={1200: 1, 9120: 2, 4000: 0})
    layers = read_vector_layers(tmp_path / "codes.gpkg", GRID, TABLE, class_field="code", date_field=None, codes=codes)
    expected = np.zeros((H, W), np.uint8)
    expected[0:2, 0:3] = 1
    expected[5:7, 5:8] = 2
    expected[10:12, 10:12] = 4  # a class name keeps working next to codes
    # the ignored feature (code 0) is dropped: it does not erase the earlier 1200 feature
    np.testing.assert_array_equal(layers.static, expected)
    with pytest.raises(LabelError) as err:
        read_vector_layers(
            tmp_path / "codes.gpkg", GRID, TABLE, class_field="code", date_field=None,
            codes=LabelCodes(value_map={1200: 1}),
        )
    msg = str(err.value)
    assert "holds codes [0, 4000, 9120]" in msg and "codes found (features): 0: 1, 1200: 1, 4000: 1, 9120: 1" in msg


def test_vector_integer_codes_without_value_map_must_be_class_ids(tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame({"lc": [1, 0, 0, 11]}, geometry=[pixel_box(0, 1, 0, 1)] * 4, crs=CRS_UTM)
    gdf.to_file(tmp_path / "ids.gpkg", driver="GPKG")
    with pytest.raises(LabelError, match=r"class ids \[0, 11\] .*codes found \(features\): 0: 2, 1: 1, 11: 1"):
        read_vector_layers(tmp_path / "ids.gpkg", GRID, TABLE, class_field="lc", date_field=None)
    with pytest.raises(LabelError, match="every feature of label vectors ids.gpkg is unlabelled"):
        read_vector_layers(
            tmp_path / "ids.gpkg", GRID, TABLE, class_field="lc", date_field=None,
            codes=LabelCodes(ignore_values=(0, 1, 11)),
        )


def test_encode_codes_both_paths() -> None:
    small = np.array([[5, -3], [5, 7]], np.int32)
    codes, counts, index = encode_codes(small)
    assert codes.tolist() == [-3, 5, 7] and counts.tolist() == [1, 2, 1]
    np.testing.assert_array_equal(codes[index], small)
    wide = np.array([0, 3_000_000_000, 0, 7], np.int64)  # span too wide for bincount
    codes, counts, index = encode_codes(wide)
    assert codes.tolist() == [0, 7, 3_000_000_000] and counts.tolist() == [2, 1, 1]
    np.testing.assert_array_equal(codes[index], wide)


def test_options_ignore_values_and_value_map() -> None:
    opts = LabelOptions.from_json('{"source": "x", "ignore_values": [255, 0, 0], "value_map": {"11": 1, " 13 ": 3}}')
    assert opts.ignore_values == (0, 255) and dict(opts.value_map) == {11: 1, 13: 3}
    assert opts.codes == LabelCodes(ignore_values=(0, 255), value_map={11: 1, 13: 3})
    assert LabelOptions.from_mapping({"source": "x", "value_map": {11: 1, 1200: 0}}).value_map == {11: 1, 1200: 0}
    assert LabelOptions.from_mapping(opts.to_dict()) == opts  # to_dict is JSON-safe and round-trips
    assert opts.to_dict()["value_map"] == {"11": 1, "13": 3}
    for raw, match in [
        ({"ignore_values": 0}, "'ignore_values' must be a list of integer"),
        ({"ignore_values": ["0"]}, "'ignore_values' must be a list of integer"),
        ({"value_map": [[11, 1]]}, "'value_map' must map source codes"),
        ({"value_map": {"wheat": 1}}, "key 'wheat', which is no integer source code"),
        ({"value_map": {"11": 255}}, r"maps '11' to 255; values must be class ids \(integers 1..254"),
        ({"value_map": {"11": True}}, "maps '11' to True"),
        ({"value_map": {"11": 1, 11: 2}}, "lists the code 11 twice"),
        ({"value_map": {"0": 0, "11": 1}, "ignore_values": [0]}, r"both list the code\(s\) \[0\]"),
    ]:
        with pytest.raises(ConfigError, match=match):
            LabelOptions.from_mapping({"source": "x", **raw})


def test_float_raster_codes_with_nan_nodata(tmp_path: Path) -> None:
    data = np.full((H, W), np.nan, np.float32)
    data[:10, :10] = 11.0
    data[30:, 30:] = -9999.0
    path = write_tif(tmp_path / "f.tif", data, CRS_UTM, TRANSFORM, nodata=float("nan"))
    got = raster_to_grid(path, GRID, TABLE, codes=LabelCodes(ignore_values=(-9999,), value_map={11: 5}))
    expected = np.zeros((H, W), np.uint8)
    expected[:10, :10] = 5
    np.testing.assert_array_equal(got, expected)
    data[0, 0] = 11.5
    path = write_tif(tmp_path / "g.tif", data, CRS_UTM, TRANSFORM, nodata=float("nan"))
    with pytest.raises(LabelError, match=r"g.tif holds non-integer values \(e.g. \[11.5\]\)"):
        raster_to_grid(path, GRID, TABLE, codes=LabelCodes(value_map={11: 5}))
