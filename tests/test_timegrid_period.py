"""The period a map shows: default year, explicit periods, the map step, and clear errors; static
labels on the period's steps through the labels stage."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.transform import Affine

from pipeline import labels as labels_stage
from pipeline.errors import ConfigError
from pipeline.raster.zarr_io import write_zarr_atomic
from pipeline.timegrid.period import TargetOptions, map_step, period_steps, resolve_period, series_range

MONTHS = np.array([f"2021-{m:02d}-01" for m in range(1, 13)] + [f"2022-{m:02d}-01" for m in range(1, 13)],
                  dtype="datetime64[ns]")
GRID = {"time_grid": {"period": "1MS", "start": "2021-01-01", "end": "2022-12-31"}}


def test_default_period_is_the_last_full_calendar_year() -> None:
    first, last = series_range(MONTHS, GRID)
    assert (str(first), str(last)) == ("2021-01-01", "2022-12-31")
    assert [str(d) for d in resolve_period(TargetOptions(), first, last)] == ["2022-01-01", "2022-12-31"]
    # without the grid's end, the last step starts on 2022-12-01: 2022 is not complete, 2021 is
    first, last = series_range(MONTHS)
    assert [str(d) for d in resolve_period(TargetOptions(), first, last)] == ["2021-01-01", "2021-12-31"]
    # a series without a full calendar year (Aug 2017 - Nov 2018): its last twelve months
    first, last = np.datetime64("2017-08-01"), np.datetime64("2018-11-30")
    assert [str(d) for d in resolve_period(TargetOptions(), first, last)] == ["2017-12-01", "2018-11-30"]
    # shorter than a year: the whole series
    first, last = np.datetime64("2018-03-01"), np.datetime64("2018-11-30")
    assert [str(d) for d in resolve_period(TargetOptions(), first, last)] == ["2018-03-01", "2018-11-30"]
    assert map_step(MONTHS, TargetOptions(), attrs=GRID) == 23
    assert map_step(MONTHS, TargetOptions(target="last_date")) == 23


def test_explicit_period_and_the_map_step(caplog: pytest.LogCaptureFixture) -> None:
    opts = TargetOptions.from_mapping({"target": "period", "period": {"start": "2021-04-01", "end": "2021-09-30"}})
    assert map_step(MONTHS, opts, attrs=GRID) == 8  # 2021-09-01
    assert period_steps(MONTHS, np.datetime64("2021-04-01"), np.datetime64("2021-09-30")).sum() == 6
    with caplog.at_level(logging.WARNING):
        map_step(MONTHS, opts, attrs=GRID, time_steps=4)
    assert "covers 4 of the 6 steps" in caplog.text and "raise train.time_steps to 6" in caplog.text


def test_period_errors_name_both_ranges() -> None:
    outside = TargetOptions.from_mapping({"period": {"start": "2019-01-01", "end": "2019-12-31"}})
    with pytest.raises(ConfigError, match=r"2019-01-01 .. 2019-12-31 lies outside the AOI's dates 2021-01-01 .. 2022-12-31"):
        map_step(MONTHS, outside, attrs=GRID)
    with pytest.raises(ConfigError, match="ends .* before it starts"):
        TargetOptions.from_mapping({"period": {"start": "2021-05-01", "end": "2021-04-01"}})
    with pytest.raises(ConfigError, match="not a date"):
        TargetOptions.from_mapping({"period": {"start": "May 2021", "end": "2021-06-01"}})
    with pytest.raises(ConfigError, match="allowed values: period, last_date"):
        TargetOptions.from_mapping({"target": "year"})
    gap = TargetOptions.from_mapping({"period": {"start": "2021-03-05", "end": "2021-03-20"}})
    with pytest.raises(ConfigError, match="no step of the series"):
        map_step(MONTHS, gap, attrs=GRID)


CLASSES = [{"id": 1, "name": "crop", "color": "#e6c34a"}, {"id": 2, "name": "forest", "color": "#1b7837"},
           {"id": 5, "name": "cloud", "color": "#f0f0f0"}]
T = [30.0, 0.0, 500000.0, 0.0, -30.0, 4500000.0]


def test_static_labels_label_the_period_steps_once_thinned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A land-cover raster without a date labels the 12 steps of 2022 only, the same thinned
    pixels at every step; a cloud class of the table is ignored in a period map."""
    ny = nx = 20
    cube = xr.Dataset({"valid": (("time", "y", "x"), np.ones((24, ny, nx), bool))},
                      coords={"time": MONTHS, "y": 4500000 - 15 - 30 * np.arange(ny), "x": 500015 + 30 * np.arange(nx)},
                      attrs={"crs": "EPSG:32649", "transform": T, **GRID})
    cz = write_zarr_atomic(cube, tmp_path / "cube.zarr")
    land = np.where(np.arange(nx)[None, :] < 10, 1, 2).repeat(ny, 0).astype(np.uint8)
    land[:2, :2] = 5  # a "cloud" labelled in the source
    with rasterio.open(tmp_path / "land_cover.tif", "w", driver="GTiff", width=nx, height=ny, count=1, dtype="uint8",
                       crs="EPSG:32649", transform=Affine(*T), nodata=0) as dst:
        dst.write(land, 1)
    out = tmp_path / "labels.zarr"
    with caplog.at_level(logging.WARNING):
        assert labels_stage.main(["--cube", str(cz), "--out", str(out), "--classes", json.dumps(CLASSES), "--options",
                                  json.dumps({"source": str(tmp_path / "land_cover.tif"), "static": True,
                                              "pixel_fraction": 0.2}),
                                  "--design", json.dumps({"design": "paper", "folds": 2}),
                                  "--target", json.dumps({"target": "period"})]) == 0
    assert "['cloud'] are not land cover" in caplog.text
    ds = xr.open_zarr(out)
    ref, lab = ds["reference"].values, ds["labels"].values
    assert not ref[:12].any() and not lab[:12].any()  # 2021: outside the period
    assert (ref[12:] == np.where(land == 5, 0, land)[None]).all()
    assert (lab[12:] == lab[12][None]).all()  # the same pixels at every step
    kept = lab[12]
    assert (kept[kept > 0] == land[kept > 0]).all()
    for cid in (1, 2):
        assert (kept == cid).sum() == int(np.floor((ref[12] == cid).sum() * 0.2))
    assert ds.attrs["time_grid"]["start"] == "2021-01-01"


def test_reference_of_a_period_is_the_latest_label_of_each_pixel() -> None:
    from pipeline.errors import AccuracyError
    from pipeline.evaluate import reference_of_period

    ref = np.zeros((4, 2, 3), np.uint8)
    ref[1, 0, :] = 1  # a survey in the period
    ref[2, 0, 0], ref[2, 1, 2] = 2, 2  # a later one: wins where it labels
    ref[3] = 3  # after the period: ignored
    labels = xr.Dataset({"reference": (("time", "y", "x"), ref)}, coords={"time": MONTHS[:4]})
    steps = np.array([True, True, True, False])
    out = reference_of_period(labels, steps, (np.datetime64("2021-01-01"), np.datetime64("2021-03-31")))
    assert out.tolist() == [[2, 1, 1], [0, 0, 2]]
    with pytest.raises(AccuracyError, match="no reference labels in the map period"):
        reference_of_period(labels, np.array([True, False, False, False]),
                            (np.datetime64("2021-01-01"), np.datetime64("2021-01-31")))


def test_window_steps_cover_the_map_period() -> None:
    import datetime as dt

    from pipeline.timegrid.period import window_steps

    year = TargetOptions()
    assert window_steps(dt.date(2021, 1, 1), dt.date(2022, 12, 31), "1MS", year) == 12
    assert window_steps(dt.date(2021, 1, 1), dt.date(2022, 12, 31), "16D", year) == 23  # a year of 16-day steps
    # the real WorldCereal span and map period on 10-day steps from 2017-08-01: 2018-01-09 .. 2018-11-25
    opts = TargetOptions.from_mapping({"period": {"start": "2018-01-01", "end": "2018-11-30"}})
    assert window_steps(dt.date(2017, 8, 1), dt.date(2018, 11, 30), "10D", opts) == 33


def test_static_labels_need_one_raster(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cube = xr.Dataset({"valid": (("time", "y", "x"), np.ones((2, 4, 4), bool))},
                      coords={"time": MONTHS[:2], "y": 4500000 - 15 - 30 * np.arange(4), "x": 500015 + 30 * np.arange(4)},
                      attrs={"crs": "EPSG:32649", "transform": T})
    cz = write_zarr_atomic(cube, tmp_path / "cube.zarr")
    (tmp_path / "labels").mkdir()
    out = tmp_path / "labels.zarr"
    assert labels_stage.main(["--cube", str(cz), "--out", str(out), "--classes", json.dumps(CLASSES), "--options",
                              json.dumps({"source": str(tmp_path / "labels"), "static": True})]) == 2
    assert "labels.static needs one label raster, got the folder" in caplog.text and not out.exists()
