"""Reference labels: class table, label dates, rasters/vectors onto the cube grid, scarcity."""

from __future__ import annotations

import math
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
