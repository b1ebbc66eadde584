"""The regular time grid: step edges, composites of clear observations against numpy, linear fill
against numpy.interp, empty steps kept as missing, chunked == unchunked, the stage and its errors."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from affine import Affine
from test_experiments import REPO, job_counts, tiny_config

from pipeline.composite import main, run_composite
from pipeline.config import check_config
from pipeline.errors import ConfigError
from pipeline.raster.load import CubeOptions
from pipeline.raster.zarr_io import open_store, write_zarr_atomic
from pipeline.timegrid.composite import composite_cube, interp_time, nanmedian_last, ndvi_bands
from pipeline.timegrid.grid import parse_period, time_grid

START, END = dt.date(2021, 1, 1), dt.date(2021, 3, 31)
# 16D steps from 01-01: two acquisitions in step 0, one in step 1, none in step 2 (02-02..02-17), three in
# step 3 (02-18..03-05, centre 02-26), none in step 4, one in step 5 (03-22..04-06)
DAYS = ["2021-01-02", "2021-01-10", "2021-01-20", "2021-02-18", "2021-02-24", "2021-03-03", "2021-03-25"]
BANDS = ["blue", "red", "nir08"]
AOI = {"bbox": [112.92, 28.12, 112.94, 28.14], "start": str(START), "end": str(END), "crs": "EPSG:32649"}


def synthetic_cube(seed: int = 0) -> xr.Dataset:
    """A 7-date cube (time, band, y, x) = (7, 3, 6, 5), float32, with a known clear pattern:
    pixel (0, 0) is never clear; pixel (1, 1) is clear only on 2021-01-20; a NaN where not clear."""
    rng = np.random.default_rng(seed)
    t, h, w = len(DAYS), 6, 5
    refl = rng.uniform(0.01, 0.5, size=(t, len(BANDS), h, w)).astype(np.float32)
    valid = rng.random((t, h, w)) < 0.6
    valid[:, 0, 0] = False
    valid[:, 1, 1] = False
    valid[2, 1, 1] = True
    refl[~np.broadcast_to(valid[:, None], refl.shape) & (rng.random(refl.shape) < 0.2)] = np.nan  # nodata when cloudy
    aoi = np.ones((h, w), bool)
    aoi[-1, -1] = False
    valid &= aoi
    fraction = (valid.sum((1, 2)) / aoi.sum()).astype(np.float32)
    fraction[3] = fraction[4]  # a tie in step 3: broken by closeness to the step centre
    times = np.array(DAYS, dtype="datetime64[ns]")
    return xr.Dataset(
        {"reflectance": (("time", "band", "y", "x"), refl), "valid": (("time", "y", "x"), valid),
         "valid_fraction": ("time", fraction), "aoi_mask": (("y", "x"), aoi)},
        coords={"time": times, "band": BANDS, "y": 3_100_000.0 - 30 * np.arange(h), "x": 500_000.0 + 30 * np.arange(w),
                "item_ids": ("time", [f"LC08_{d.replace('-', '')}" for d in DAYS])},
        attrs={"crs": "EPSG:32649", "transform": [30.0, 0.0, 499_985.0, 0.0, -30.0, 3_100_015.0], "aoi": "mini"},
    )


def members(grid, cube) -> list[np.ndarray]:
    step = grid.step_index(cube.time.values)
    return [np.flatnonzero(step == i) for i in range(grid.steps)]


def expected(cube: xr.Dataset, method: str) -> np.ndarray:
    """Independent composite (steps, band, y, x): pixel by pixel, in numpy."""
    grid = time_grid(START, END, "16D")
    refl, valid = cube.reflectance.values, cube.valid.values
    fractions, times = cube.valid_fraction.values, cube.time.values
    out = np.full((grid.steps, *refl.shape[1:]), np.nan, np.float32)
    for s, idx in enumerate(members(grid, cube)):
        centre = grid.starts[s] + (grid.ends[s] - grid.starts[s]) / 2
        for yy in range(refl.shape[2]):
            for xx in range(refl.shape[3]):
                clear = [i for i in idx if valid[i, yy, xx]]
                if not clear:
                    continue
                obs = refl[clear, :, yy, xx]
                if method == "median":
                    out[s, :, yy, xx] = np.median(obs, axis=0)
                elif method == "mean":
                    out[s, :, yy, xx] = obs.mean(axis=0)
                elif method == "max_ndvi":
                    ndvi = [(o[2] - o[1]) / (o[2] + o[1]) for o in obs]
                    out[s, :, yy, xx] = obs[int(np.argmax(ndvi))]
                else:  # best: highest valid fraction, then closest to the centre, then earliest
                    key = [(-fractions[i], abs(times[i] - centre), times[i]) for i in clear]
                    out[s, :, yy, xx] = refl[clear[min(range(len(clear)), key=key.__getitem__)], :, yy, xx]
    return out


def test_grid_steps_start_at_the_aoi_start_and_cover_its_end() -> None:
    grid = time_grid(START, END, "16D")
    assert str(grid.starts[0])[:10] == "2021-01-01" and grid.steps == 6
    assert np.all(np.diff(grid.starts) == np.timedelta64(16, "D")) and np.all(grid.ends[:-1] == grid.starts[1:])
    assert grid.ends[-1] > np.datetime64("2021-03-31") >= grid.starts[-1]
    assert str(grid.centres[0])[:10] == "2021-01-09"
    months = time_grid(dt.date(2021, 1, 5), dt.date(2021, 3, 1), "1MS")
    assert [str(s)[:10] for s in months.starts] == ["2021-01-01", "2021-02-01", "2021-03-01"]
    assert list(grid.step_index(np.array(["2020-12-31", "2021-01-01", "2021-01-17", "2021-04-26"],
                                         dtype="datetime64[D]"))) == [-1, 0, 1, -1]


@pytest.mark.parametrize("period", ["16x", "0D", "12h", "", "M-bogus"])
def test_an_unparseable_period_names_the_key_and_examples(period: str) -> None:
    with pytest.raises(ConfigError, match=r"cube\.period.*(16D|whole number)"):
        parse_period(period)
    with pytest.raises(ConfigError, match=r"cube\.period"):
        CubeOptions(period=period)


@pytest.mark.parametrize("method", ["median", "mean", "max_ndvi", "best"])
def test_composites_equal_numpy(method: str) -> None:
    cube = synthetic_cube()
    out = composite_cube(cube, time_grid(START, END, "16D"), method=method, fill="none")
    np.testing.assert_allclose(out.reflectance.values, expected(cube, method), rtol=1e-6, equal_nan=True)
    assert out.reflectance.dtype == np.float32 and out.reflectance.dims == ("time", "band", "y", "x")


def test_clear_count_validity_and_empty_steps() -> None:
    cube = synthetic_cube()
    grid = time_grid(START, END, "16D")
    out = composite_cube(cube, grid, method="median", fill="linear")
    groups = members(grid, cube)
    count = np.stack([cube.valid.values[idx].sum(0) for idx in groups])
    np.testing.assert_array_equal(out.clear_count.values, count)
    assert out.clear_count.dtype == np.uint16 and out.valid.dtype == bool
    np.testing.assert_array_equal(out.valid.values, count > 0)
    assert [len(g) for g in groups] == out.attrs["time_grid"]["acquisitions_per_step"] == [2, 1, 0, 3, 0, 1]
    assert out.attrs["time_grid"]["empty_steps"] == 2
    assert list(out.item_ids.values) == ["LC08_20210102,LC08_20210110", "LC08_20210120", "",
                                         "LC08_20210218,LC08_20210224,LC08_20210303", "", "LC08_20210325"]
    assert not out.valid.values[2].any() and not out.valid.values[4].any()  # empty steps: missing, not filled
    assert out.time.dtype == np.dtype("datetime64[ns]") and str(out.time.values[2])[:10] == "2021-02-02"
    inside = cube.aoi_mask.values
    np.testing.assert_allclose(out.valid_fraction.values, (count > 0)[:, inside].sum(1) / inside.sum(), rtol=1e-6)
    assert out.attrs["crs"] == "EPSG:32649" and out.attrs["time_grid"]["period"] == "16D"


def test_linear_fill_equals_numpy_interp_and_never_clear_stays_nan() -> None:
    cube = synthetic_cube()
    grid = time_grid(START, END, "16D")
    raw = composite_cube(cube, grid, method="median", fill="none").reflectance.values
    filled = composite_cube(cube, grid, method="median", fill="linear").reflectance.values
    x = (grid.starts - grid.starts[0]) / np.timedelta64(1, "D")
    for b in range(raw.shape[1]):
        for yy in range(raw.shape[2]):
            for xx in range(raw.shape[3]):
                series = raw[:, b, yy, xx]
                ok = np.isfinite(series)
                if not ok.any():
                    assert np.isnan(filled[:, b, yy, xx]).all()
                    continue
                np.testing.assert_allclose(filled[:, b, yy, xx], np.interp(x, x[ok], series[ok]), rtol=1e-6)
    assert np.isnan(filled[:, :, 0, 0]).all()  # never clear: the map is nodata there
    assert np.isfinite(filled[:, :, 1, 1]).all()  # clear once (step 1): held constant everywhere
    np.testing.assert_allclose(filled[:, :, 1, 1], np.broadcast_to(raw[1, :, 1, 1], filled[:, :, 1, 1].shape))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 13])
def test_nanmedian_last_equals_numpy_nanmedian_to_the_bit(n: int) -> None:
    """The vectorised median of the composites against numpy.nanmedian: odd and even counts of
    clear values, all-NaN series (NaN, no warning), infinities counted as values, float32."""
    rng = np.random.default_rng(n)
    values = (rng.normal(size=(3, 40, 30, n)) * 1000).astype(np.float32)
    values[rng.random(values.shape) < 0.45] = np.nan
    values[0, :5] = np.nan  # all-NaN series
    values[1, 0, 0, 0] = np.inf
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning, match="All-NaN"):
        expected = np.nanmedian(values, axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = nanmedian_last(values)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(got[0, :5]).all()


def test_interp_time_worked_example() -> None:
    values = np.array([[np.nan, 1.0, np.nan, np.nan, 4.0, np.nan], [np.nan] * 6], dtype=np.float32)
    x = np.array([0.0, 10, 20, 30, 40, 50])
    out = interp_time(values, x)
    np.testing.assert_allclose(out[0], [1, 1, 2, 3, 4, 4])
    assert np.isnan(out[1]).all()


@pytest.mark.parametrize("missing", [0.0, 0.3, 0.9])
@pytest.mark.parametrize("layout", ["time-last", "time-first view"])
def test_interp_time_equals_numpy_interp_per_series(missing: float, layout: str) -> None:
    """Every series against numpy.interp in float64 (cast to float32 as the composite stores it):
    gaps at the start, the end and inside, uneven step positions, both memory layouts."""
    rng = np.random.default_rng(int(missing * 10))
    t = 17
    x = np.cumsum(rng.integers(3, 40, size=t)).astype(np.float64)
    first = (rng.normal(size=(t, 2, 9, 8)) * 1000).astype(np.float32)
    first[rng.random(first.shape) < missing] = np.nan
    first[:, 0, 0, 0] = np.nan  # no value at all
    first[:-1, 0, 0, 1] = np.nan  # only the last step
    values = np.moveaxis(first, 0, -1) if layout == "time-first view" else np.ascontiguousarray(np.moveaxis(first, 0, -1))
    before = values.copy()
    out = interp_time(values, x)
    assert out.dtype == np.float32 and out.shape == values.shape
    np.testing.assert_array_equal(values, before)  # the input is left as it was
    for idx in np.ndindex(values.shape[:-1]):
        series = values[idx]
        ok = np.isfinite(series)
        if not ok.any():
            assert np.isnan(out[idx]).all()
            continue
        expected = np.interp(x, x[ok], series[ok].astype(np.float64)).astype(np.float32)
        np.testing.assert_array_equal(out[idx], expected)


@pytest.mark.parametrize("method", ["median", "max_ndvi", "best"])
def test_chunked_equals_unchunked(method: str) -> None:
    cube = synthetic_cube(seed=3)
    grid = time_grid(START, END, "16D")
    plain = composite_cube(cube, grid, method=method, fill="linear")
    lazy = composite_cube(cube.chunk({"time": 1, "y": 4, "x": 2}), grid, method=method, fill="linear")
    assert lazy.reflectance.chunks is not None
    xr.testing.assert_identical(plain.compute(), lazy.compute())


def test_a_period_shorter_than_the_revisit_warns_with_the_share_of_empty_steps(caplog) -> None:
    cube = synthetic_cube()
    with caplog.at_level(logging.WARNING, logger="pipeline.timegrid.composite"):
        out = composite_cube(cube, time_grid(START, END, "2D"), method="median")
    record = out.attrs["time_grid"]
    assert record["steps"] == 45 and record["empty_steps"] == 45 - 7
    assert "84%" in record["warning"] and "cube.period" in record["warning"] and "84%" in caplog.text
    assert "warning" not in composite_cube(cube, time_grid(START, END, "16D")).attrs["time_grid"]


def test_max_ndvi_needs_red_and_nir() -> None:
    assert ndvi_bands(["red", "nir", "nir08"]) == ("red", "nir")
    assert ndvi_bands(["blue", "red", "nir08"]) == ("red", "nir08")
    cube = synthetic_cube().assign_coords(band=["b2", "b4", "b8"])
    with pytest.raises(ConfigError, match=r"sensor\.bands.*\['b2', 'b4', 'b8'\]"):
        composite_cube(cube, time_grid(START, END, "16D"), method="max_ndvi")


def test_options_validate_composite_and_fill() -> None:
    assert CubeOptions().period == "16D" and CubeOptions(period=None).period is None
    with pytest.raises(ConfigError, match=r"cube\.composite 'maximum'"):
        CubeOptions(composite="maximum")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"cube\.fill"):
        CubeOptions(fill="spline")  # type: ignore[arg-type]


def test_stage_writes_the_store_atomically(tmp_path: Path) -> None:
    cube_path = tmp_path / "cube.zarr"
    write_zarr_atomic(synthetic_cube().chunk({"time": 1}), cube_path)
    out = tmp_path / "composite.zarr"
    options = json.dumps({"period": "16D", "composite": "best", "fill": "linear"})
    assert main(["--cube", str(cube_path), "--aoi", json.dumps(AOI), "--options", options,
                 "--out", str(out), "--threads", "2"]) == 0
    stored = open_store(out, required=("reflectance", "valid", "clear_count", "valid_fraction", "aoi_mask"))
    assert stored.sizes["time"] == 6 and stored.attrs["time_grid"]["composite"] == "best"
    assert stored.attrs["completion_manifest"] == ".pipeline-complete.json"
    direct = composite_cube(synthetic_cube(), time_grid(START, END, "16D"), method="best")
    np.testing.assert_array_equal(stored.reflectance.values, direct.reflectance.values)
    assert not list(tmp_path.glob(".tmp-*"))


def test_stage_errors(tmp_path: Path) -> None:
    cube_path = tmp_path / "cube.zarr"
    write_zarr_atomic(synthetic_cube(), cube_path)
    with pytest.raises(ConfigError, match=r"cube\.period is null"):
        run_composite(cube_path, AOI, CubeOptions(period=None), tmp_path / "c.zarr")
    assert main(["--cube", str(cube_path), "--aoi", json.dumps(AOI), "--options", '{"period": "fortnight"}',
                 "--out", str(tmp_path / "c.zarr")]) == 2
    assert not (tmp_path / "c.zarr").exists()


def dry_run(workdir: Path, config: dict, *targets: str) -> subprocess.Popen[str]:
    """``snakemake -n -p targets`` in ``workdir`` with ``config``, started (read it with communicate())."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", *targets, "-n", "-p", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--cores", "1"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_workflow_with_a_period_reads_the_composite(tmp_path: Path) -> None:
    """Dry runs (started together, for speed): `maps` composites the cube and every later stage reads
    the composite; the cloud_cover experiment stops with a message."""
    config = tiny_config()
    config["cube"].update(period="16D", composite="max_ndvi")
    maps = dry_run(tmp_path / "maps", config, "maps")
    cloud = dry_run(tmp_path / "cloud", config, "cloud_cover")
    out, _ = maps.communicate(timeout=120)
    cloud_out, _ = cloud.communicate(timeout=120)
    assert maps.returncode == 0, out[-3000:]
    counts = job_counts(out)
    assert counts["composite_cube"] == 1 and counts["build_cube"] == 1
    lines = out.splitlines()
    composite = next(line for line in lines if "-m pipeline.composite " in line)
    assert "--cube results/mini/cube.zarr" in composite and "--out results/mini/composite.zarr" in composite
    assert json.loads(composite.split("--options '")[1].split("'")[0]) == {
        "period": "16D", "composite": "max_ndvi", "fill": "linear"}
    cube = next(line for line in lines if "-m pipeline.cube " in line)
    assert "period" not in cube  # changing the grid does not reload the scenes
    for stage in ("features", "labels", "evaluate"):
        line = next(line for line in lines if f"-m pipeline.{stage} " in line)
        assert "--cube results/mini/composite.zarr" in line, line
    assert cloud.returncode != 0 and "cube.period: null (the paper's per-date protocol)" in cloud_out, cloud_out[-3000:]


def test_period_problems_in_the_config() -> None:
    config = tiny_config()
    config["cube"]["period"] = "16D"
    config.setdefault("runtime", {})["tiling"] = {"tile_size": 32}
    assert check_config(config)["cube"]["period"] == "16D"  # tiles composite on the AOI's grid
    config["runtime"]["tiling"] = {"tile_size": None}
    config["cube"]["period"] = "a fortnight"
    with pytest.raises(ConfigError, match=r"cube\.period 'a fortnight' is not a pandas offset alias.*\"16D\""):
        check_config(config)
    config["cube"]["period"] = None
    assert check_config(config)["cube"]["composite"] == "median"


def test_cloud_subset_refuses_features_on_a_time_grid() -> None:
    from pipeline.cloud_subset import SubsetOptions, subset_features

    out = composite_cube(synthetic_cube(), time_grid(START, END, "16D"))
    features = xr.Dataset({"features": out.reflectance.astype("float16"), "valid": out.valid}, attrs=out.attrs)
    with pytest.raises(ConfigError, match=r"cube\.period: null"):
        subset_features(features, SubsetOptions(max_cloud_cover=10, source="aoi"))
    features.attrs.pop("time_grid")
    assert subset_features(features, SubsetOptions(max_cloud_cover=100, source="aoi", min_dates=1)).sizes["time"] == 6


def test_dated_labels_go_to_the_step_holding_their_day() -> None:
    from pipeline.reference.build import LabelLayers, stack_on_cube_dates
    from pipeline.reference.dates import match_steps
    from pipeline.reference.rasterize import CubeGrid

    grid = time_grid(START, END, "16D")
    days = [np.datetime64(d) for d in ("2021-01-20", "2021-01-03", "2021-01-16", "2021-04-10")]
    match = match_steps(days, grid.starts, grid.ends)
    assert match.cube_index == (1, 0, 0, -1) and match.unmatched == ("2021-04-10",)
    early, late = np.zeros((2, 3), np.uint8), np.zeros((2, 3), np.uint8)
    early[0, :2], late[0, 1:] = 1, 2  # two dates of step 0: the later wins where both label
    layers = LabelLayers(dated=[(days[2], late), (days[1], early)], static=None)
    cube_grid = CubeGrid(crs="EPSG:32649", transform=Affine(30.0, 0.0, 0.0, 0.0, -30.0, 90.0), shape=(2, 3),
                         times=grid.starts)
    labels, unmatched = stack_on_cube_dates(layers, cube_grid, tolerance_days=0, step_ends=grid.ends)
    np.testing.assert_array_equal(labels[0], [[1, 2, 2], [0, 0, 0]])
    assert not labels[1:].any() and unmatched == []
