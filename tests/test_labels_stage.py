"""Stage ``python -m pipeline.labels``: cube.zarr + label rasters/vectors -> labels.zarr."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from shapely.geometry import box

from pipeline.labels import main
from pipeline.raster.zarr_io import open_store, write_zarr_atomic

CRS_UTM = "EPSG:32649"
X0, Y0, RES = 600_000.0, 2_500_000.0, 30.0
H, W = 24, 32
TRANSFORM = Affine(RES, 0.0, X0, 0.0, -RES, Y0)
DAYS = ["2021-01-05", "2021-01-21", "2021-02-06", "2021-02-22", "2021-03-10", "2021-03-26"]
CLASSES = json.dumps(
    [
        {"id": 1, "name": "cultivated", "color": "#e6c34a"},
        {"id": 2, "name": "forest", "color": "#1b7837"},
        {"id": 4, "name": "water", "color": "#2166ac"},
    ]
)


@pytest.fixture()
def cube(tmp_path: Path) -> Path:
    times = np.array([f"{d}T03:10" for d in DAYS], dtype="datetime64[ns]")
    ds = xr.Dataset(
        {"valid": (("time", "y", "x"), np.ones((times.size, H, W), bool))},
        coords={"time": times, "y": Y0 - RES * (np.arange(H) + 0.5), "x": X0 + RES * (np.arange(W) + 0.5)},
        attrs={"crs": CRS_UTM, "transform": list(TRANSFORM)[:6]},
    )
    return write_zarr_atomic(ds, tmp_path / "cube.zarr")


def label_for(t: int) -> np.ndarray:
    lab = np.zeros((H, W), np.uint8)
    lab[:, : W // 2] = 1
    lab[:, W // 2 :] = 2
    lab[: 4 + t, :4] = 4
    lab[-3:, :] = 0
    return lab


def write_rasters(folder: Path, n: int) -> Path:
    folder.mkdir()
    for t in range(n):
        with rasterio.open(
            folder / f"labels_{DAYS[t].replace('-', '')}.tif", "w", driver="GTiff", height=H, width=W, count=1,
            dtype="uint8", crs=CRS_UTM, transform=TRANSFORM, nodata=0,
        ) as dst:
            dst.write(label_for(t), 1)
    return folder


def run(cube: Path, out: Path, options: dict, classes: str = CLASSES) -> int:
    return main(["--cube", str(cube), "--out", str(out), "--classes", classes, "--options", json.dumps(options)])


def test_stage_end_to_end_rasters(cube: Path, tmp_path: Path) -> None:
    src = write_rasters(tmp_path / "lab", 5)  # labels on the first five cube dates
    out = tmp_path / "results" / "aoi" / "labels.zarr"
    assert run(cube, out, {"source": str(src)}) == 0
    ds = open_store(out, required=("labels",))
    assert ds["labels"].dims == ("time", "y", "x") and ds["labels"].dtype == np.uint8
    np.testing.assert_array_equal(ds["time"].values, open_store(cube)["time"].values)
    np.testing.assert_array_equal(ds["x"].values, X0 + RES * (np.arange(W) + 0.5))
    got = ds["labels"].values
    for t in range(5):
        np.testing.assert_array_equal(got[t], label_for(t))
    assert not got[5].any()
    assert ds.attrs["crs"] == CRS_UTM and ds.attrs["transform"] == list(TRANSFORM)[:6]
    assert [c["id"] for c in ds.attrs["classes"]] == [1, 2, 4]
    assert ds.attrs["labelled_dates"] == DAYS[:5]
    assert not list(tmp_path.glob("results/aoi/.tmp-*"))


def test_stage_scarcity_options(cube: Path, tmp_path: Path) -> None:
    src = write_rasters(tmp_path / "lab", 5)
    out = tmp_path / "labels.zarr"
    opts = {"source": str(src), "date_fraction": 0.5, "pixel_fraction": 0.1, "seed": 7}
    assert run(cube, out, opts) == 0
    got = open_store(out)["labels"].values
    assert open_store(out).attrs["labelled_dates"] == DAYS[3:5]  # floor(5 / 2) = 2, earliest removed
    assert not got[:3].any() and not got[5].any()
    for t in (3, 4):
        full = label_for(t)
        for cid in (1, 2, 4):
            assert int((got[t] == cid).sum()) == max(1, math.floor(int((full == cid).sum()) * 0.1))
        kept = got[t] > 0
        np.testing.assert_array_equal(got[t][kept], full[kept])


def test_stage_vectors_static_and_dated(cube: Path, tmp_path: Path) -> None:
    poly = box(X0, Y0 - 10 * RES, X0 + 10 * RES, Y0)  # rows 0..9, cols 0..9
    gdf = gpd.GeoDataFrame(
        {"cls": [2, 4], "when": [None, "2021-02-07"]},
        geometry=[poly, box(X0 + 20 * RES, Y0 - 5 * RES, X0 + 25 * RES, Y0)],
        crs=CRS_UTM,
    ).to_crs("EPSG:4326")
    gdf.to_file(tmp_path / "lab.gpkg", driver="GPKG")
    out = tmp_path / "labels.zarr"
    opts = {"source": str(tmp_path / "lab.gpkg"), "class_field": "cls", "date_field": "when", "date_tolerance_days": 1}
    assert run(cube, out, opts) == 0
    got = open_store(out)["labels"].values
    assert (got[:, 0:10, 0:10] == 2).all() and int((got == 2).sum()) == 6 * 100  # static on every date
    assert (got[2, 0:5, 20:25] == 4).all() and int((got == 4).sum()) == 25  # only 2021-02-06


@pytest.mark.parametrize(
    ("options", "classes", "message"),
    [
        ({"source": "x", "date_fracton": 0.5}, CLASSES, "date_fracton"),
        ({"source": "x", "date_removal": "newest"}, CLASSES, "date_removal"),
        ("not json", CLASSES, "not valid JSON"),
        ({"source": "missing-folder"}, CLASSES, "does not exist"),
        ({"source": "LAB"}, json.dumps([{"id": 1, "name": "cultivated", "color": "#e6c34a"}]), r"class ids \[2, 4\]"),
        ({"source": "x"}, '[{"id": 0, "name": "a", "color": "#000000"}]', "1..254"),
    ],
)
def test_stage_user_errors_exit_2(
    cube: Path, tmp_path: Path, options: dict | str, classes: str, message: str
) -> None:
    src = write_rasters(tmp_path / "lab", 2)
    if isinstance(options, dict) and options.get("source") == "LAB":
        options = {"source": str(src)}
    text = options if isinstance(options, str) else json.dumps(options)
    out = tmp_path / "labels.zarr"
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    cli_log = logging.getLogger("pipeline.cli")  # run_stage logs user errors there
    cli_log.addHandler(handler)
    try:
        code = main(["--cube", str(cube), "--out", str(out), "--classes", classes, "--options", text])
    finally:
        cli_log.removeHandler(handler)
    assert code == 2
    errors = [r.getMessage() for r in records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and re.search(message, errors[0]), errors
    assert records[0].exc_info is None  # one clear message, no traceback
    assert not out.exists()


def write_crop_codes(path: Path, *, crs: str | None = CRS_UTM, transform: Affine | None = TRANSFORM) -> Path:
    """uint16 crop codes of label_for(0): 1 -> 1200, 2 -> 9120, 4 -> 5000, unlabelled -> 0."""
    lab = label_for(0)
    codes = np.choose(np.searchsorted([0, 1, 2, 4], lab), [0, 1200, 9120, 5000]).astype(np.uint16)
    profile = {"crs": crs} if crs else {}
    if transform is not None:
        profile["transform"] = transform
    with rasterio.open(
        path, "w", driver="GTiff", height=H, width=W, count=1, dtype="uint16", nodata=65535, **profile
    ) as dst:
        dst.write(codes, 1)
    return path


def test_stage_value_map_on_finer_raster_in_another_utm_zone(cube: Path, tmp_path: Path) -> None:
    """uint16 codes at 10 m in EPSG:32650, value_map keys as JSON strings -> class ids on the cube grid."""
    from rasterio.warp import calculate_default_transform, reproject

    lab = label_for(0)
    codes = np.choose(np.searchsorted([0, 1, 2, 4], lab), [0, 1200, 9120, 5000]).astype(np.uint16)
    fine = np.repeat(np.repeat(codes, 3, axis=0), 3, axis=1)
    fine_tr = TRANSFORM @ Affine.scale(1 / 3)
    tr, w, h = calculate_default_transform(
        CRS_UTM, "EPSG:32650", W * 3, H * 3, X0, Y0 - H * RES, X0 + W * RES, Y0, resolution=10.0
    )
    other = np.full((h, w), 65535, np.uint16)
    reproject(fine, other, src_transform=fine_tr, src_crs=CRS_UTM, src_nodata=65535, dst_transform=tr,
              dst_crs="EPSG:32650", dst_nodata=65535, resampling=rasterio.enums.Resampling.nearest)
    path = tmp_path / f"crops_{DAYS[0].replace('-', '')}.tif"
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=1, dtype="uint16",
                       crs="EPSG:32650", transform=tr, nodata=65535) as dst:
        dst.write(other, 1)
    out = tmp_path / "labels.zarr"
    options = {"source": str(path), "ignore_values": [0], "value_map": {"1200": 1, "9120": 2, "5000": 4}}
    assert run(cube, out, options) == 0
    got = open_store(out)["labels"].values[0]
    assert got.dtype == np.uint8
    # known pixels, away from the class edges: the mapping and the reprojection both hold
    assert got[10, 8] == 1 and got[10, 24] == 2 and got[1, 1] == 4 and got[22, 10] == 0
    for cid in (1, 2, 4):
        inter = np.logical_and(got == cid, lab == cid).sum()
        assert inter / np.logical_or(got == cid, lab == cid).sum() > 0.85, cid


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unmapped", r"crops_20210105.tif holds codes \[5000\] that are neither keys of labels.value_map.*5000: "),
        ("bad_target", r"labels.value_map maps 5000 -> 3, but \[3\] are not class ids of `classes`"),
        ("bad_key", r"'value_map' has the key 'wheat'"),
        ("not_georeferenced", r"crops_20210105.tif is not georeferenced .*gdal_translate -a_srs EPSG:32649 -a_ullr"),
        ("no_crs", r"crops_20210105.tif has no CRS; .*gdal_translate -a_srs EPSG:32649"),
    ],
)
def test_stage_label_code_and_georeference_errors_exit_2(
    cube: Path, tmp_path: Path, case: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    import warnings

    path = tmp_path / "crops_20210105.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        if case == "not_georeferenced":
            write_crop_codes(path, crs=None, transform=None)
        elif case == "no_crs":
            write_crop_codes(path, crs=None)
        else:
            write_crop_codes(path)
    value_map = {"unmapped": {"1200": 1, "9120": 2}, "bad_target": {"1200": 1, "9120": 2, "5000": 3},
                 "bad_key": {"wheat": 1}}.get(case, {"1200": 1, "9120": 2, "5000": 4})
    out = tmp_path / "labels.zarr"
    with caplog.at_level(logging.ERROR, logger="pipeline.cli"):
        code = run(cube, out, {"source": str(path), "ignore_values": [0], "value_map": value_map})
    assert code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and re.search(message, errors[0]), errors
    assert not out.exists()
