"""Composites of clear observations on a regular time grid (lazy, dask-aware, per-step vectorised).

Input: a pipeline cube (layout in :mod:`pipeline.raster.zarr_io`): ``reflectance`` (time, band,
y, x) float32 NaN where nodata, cloudy pixels keep their values; ``valid`` (time, y, x) bool =
clear; ``valid_fraction`` (time,); ``aoi_mask`` (y, x) bool; ``item_ids`` coord per date.

Only clear observations (``valid``) enter a composite. Per step and pixel:

- ``median`` / ``mean``: of the clear observations, band by band;
- ``max_ndvi``: the clear observation with the highest NDVI ``(nir - red) / (nir + red)`` (all
  bands of that acquisition; ties: the earliest);
- ``best``: the clear observation of the least cloudy acquisition of the step (highest
  ``valid_fraction``; ties: the closest to the step centre, then the earliest).

``fill="linear"`` interpolates the reflectance of steps without a clear observation linearly in
time between the neighbouring steps that have one (held constant before the first and after the
last); a pixel with no clear observation in the whole series stays NaN. ``valid`` is never filled.

The result is :func:`composite_cube`'s ``composite.zarr`` layout (its docstring).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import xarray as xr

from pipeline.errors import ConfigError
from pipeline.timegrid.grid import Composite, Fill, TimeGrid, grid_warning

log = logging.getLogger(__name__)

# numpy's nanmax/nanmean warn on pixels without a clear observation in a step: NaN is the answer there
warnings.filterwarnings("ignore", message="All-NaN slice encountered", category=RuntimeWarning)
warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)

LOWEST = np.float32(-3.0e38)  # score of a clear observation whose NDVI is not finite (still beats none)
FILL_CHUNK_ELEMENTS = 2**22  # values per chunk of the fill (whole time axis): about 16 MB of float32


def ndvi_bands(bands: list[str]) -> tuple[str, str]:
    """The (red, nir) band names for NDVI: ``red`` and ``nir`` (else ``nir08``, else another
    ``nir*``). ConfigError naming ``sensor.bands`` when either is missing."""
    nirs = [b for b in ("nir", "nir08") if b in bands] + sorted(b for b in bands if b.startswith("nir"))
    if "red" not in bands or not nirs:
        raise ConfigError(
            f"cube.composite 'max_ndvi' needs bands named 'red' and 'nir' (or 'nir08') in sensor.bands; the cube has "
            f"{bands}. Name them so in sensor.bands (e.g. {{red: B04, nir: B08}}), or choose cube.composite "
            f"median, mean or best")
    return "red", nirs[0]


def _whole(da: xr.DataArray, dim: str) -> xr.DataArray:
    """``da`` with ``dim`` in one dask chunk (unchanged when it holds numpy data)."""
    return da.chunk({dim: -1}) if da.chunks is not None else da


def _pick(masked: xr.DataArray, score: xr.DataArray) -> xr.DataArray:
    """Per pixel, the observation of ``masked`` (time, band, y, x; NaN where not clear) at the
    time of the highest ``score`` (time, y, x; -inf where not clear): (band, y, x) float32."""
    best = score.argmax("time")
    chosen = xr.DataArray(np.arange(score.sizes["time"]), dims="time") == best
    return masked.where(chosen).max("time")


def _score_ndvi(masked: xr.DataArray, valid: xr.DataArray, red: str, nir: str) -> xr.DataArray:
    r, n = masked.sel(band=red, drop=True), masked.sel(band=nir, drop=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (n - r) / (n + r)
    return ndvi.where(np.isfinite(ndvi), LOWEST).where(valid, -np.inf)


def best_priority(fractions: np.ndarray, times: np.ndarray, centre: np.datetime64) -> np.ndarray:
    """(n,) float32 priority of the acquisitions of one step for ``best`` (higher wins): highest
    ``fractions`` (valid_fraction) first, then closest to ``centre``, then earliest."""
    gap = np.abs((np.asarray(times).astype("datetime64[ns]") - centre).astype(np.int64))
    order = np.lexsort((np.arange(len(gap)), gap, -np.asarray(fractions, dtype=np.float64)))
    priority = np.empty(len(gap), dtype=np.float32)
    priority[order] = np.arange(len(gap), 0, -1, dtype=np.float32)
    return priority


SORTING_NETWORK_MAX = 8  # up to this many acquisitions per step the median sorts with element-wise min / max


def nanmedian_last(values: np.ndarray) -> np.ndarray:
    """Median over the last axis of ``values`` (..., n) float32, ignoring NaN; NaN where all are NaN.

    The same values as ``numpy.nanmedian`` (the mean of the two middle values, in float32, for
    an even count), vectorised: numpy's version for short axes goes through masked arrays and
    issues one warning per all-NaN series, which made it the bulk of the composite stage
    (a warning per pixel, band and step without a clear observation; bench/README.md). Up to
    :data:`SORTING_NETWORK_MAX` values per series (a step's acquisitions: 1-3 for monthly
    Landsat) they are ordered by an odd-even transposition network of element-wise
    ``fmin`` / ``maximum`` (NaN last, as ``numpy.sort``) over whole arrays; longer series by
    ``numpy.sort`` along the axis.
    """
    n = values.shape[-1]
    if n == 1:
        return values[..., 0].astype(np.float32)
    if n <= SORTING_NETWORK_MAX:
        rows = [values[..., i].astype(np.float32) for i in range(n)]
        for r in range(n):  # n rounds of an odd-even transposition network sort any input
            for i in range(r % 2, n - 1, 2):
                rows[i], rows[i + 1] = np.fmin(rows[i], rows[i + 1]), np.maximum(rows[i], rows[i + 1])
        count = sum((~np.isnan(row)).astype(np.int16) for row in rows)
        out = np.full(rows[0].shape, np.nan, dtype=np.float32)
        for c in range(1, n + 1):
            lo, hi = rows[(c - 1) // 2], rows[c // 2]
            with np.errstate(invalid="ignore", over="ignore"):
                mid = lo if c % 2 == 1 else (lo + hi) / np.float32(2)
            np.copyto(out, mid, where=count == c)
        return out
    ordered = np.sort(values, axis=-1)  # NaN sort last
    count = (~np.isnan(values)).sum(axis=-1, keepdims=True)  # non-NaN values, first in ``ordered``
    lo = np.take_along_axis(ordered, np.maximum(count - 1, 0) // 2, -1)[..., 0]
    hi = np.take_along_axis(ordered, count // 2, -1)[..., 0]
    count = count[..., 0]
    with np.errstate(invalid="ignore", over="ignore"):
        mid = np.where(count % 2 == 1, lo, (lo + hi) / np.float32(2))
    return np.where(count > 0, mid, np.float32(np.nan)).astype(np.float32)


def _median_time(masked: xr.DataArray) -> xr.DataArray:
    """:func:`nanmedian_last` over ``time`` of ``masked`` (time, band, y, x) -> (band, y, x)
    float32; lazy with dask (``time`` in one chunk)."""
    return xr.apply_ufunc(nanmedian_last, masked, input_core_dims=[["time"]], dask="parallelized",
                          output_dtypes=[np.float32])


def _step(masked: xr.DataArray, valid: xr.DataArray, fractions: np.ndarray, centre: np.datetime64,
          method: Composite, bands: tuple[str, str] | None) -> xr.DataArray:
    """The composite (band, y, x) float32 of one step's acquisitions (``masked`` (time, band, y,
    x) NaN where not clear, ``valid`` (time, y, x))."""
    masked = _whole(masked, "time")
    if method == "median":
        out = _median_time(masked)
    elif method == "mean":
        out = masked.mean("time", skipna=True)
    elif method == "max_ndvi":
        assert bands is not None
        out = _pick(masked, _score_ndvi(masked, valid, *bands))
    else:
        priority = xr.DataArray(best_priority(fractions, masked["time"].values, centre), dims="time")
        out = _pick(masked, xr.where(valid, priority, -np.inf))
    return out.astype("float32").reset_coords(drop=True)


def interp_time(values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Linear interpolation along the last axis of ``values`` (..., T) over the positions ``x``
    (T,) float64 of its NaNs, held constant before the first / after the last finite value (as
    ``numpy.interp``); all-NaN series stay NaN. Vectorised over the leading axes; float32.

    Runs on the time-first view (the memory order of the composite's chunks: ``moveaxis`` of a
    time-first array is a view) one step at a time, and computes values only where a step is
    NaN, in float64 as ``(1 - w) v_lo + w v_hi`` written ``v_lo + (v_hi - v_lo) w``.
    """
    t = values.shape[-1]
    first = np.moveaxis(values, -1, 0)
    out = _interp_first(first.reshape(t, -1), np.asarray(x, dtype=np.float64))
    return np.moveaxis(out.reshape(first.shape), 0, -1)


def _interp_first(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """:func:`interp_time` of ``v`` (T, N) float along its first axis -> (T, N) float32."""
    t, n = v.shape
    out = np.array(v, dtype=np.float32, order="C")
    missing = np.isnan(out)
    if not missing.any():
        return out
    dtype = np.int16 if t < 2**15 - 1 else np.int32
    prev = np.empty((t, n), dtype=dtype)  # last step <= i with a value, -1 if none
    nxt = np.empty((t, n), dtype=dtype)  # first step >= i with a value, t if none
    cur = np.full(n, -1, dtype=dtype)
    for i in range(t):
        np.copyto(cur, dtype(i), where=~missing[i])
        prev[i] = cur
    cur.fill(t)
    for i in range(t - 1, -1, -1):
        np.copyto(cur, dtype(i), where=~missing[i])
        nxt[i] = cur
    for i in range(t):
        sel = np.flatnonzero(missing[i])
        p, q = prev[i, sel].astype(np.intp), nxt[i, sel].astype(np.intp)
        lo = np.where(p >= 0, p, q)
        hi = np.where(q < t, q, p)
        keep = lo < t  # lo == t: no value in the whole series, stays NaN
        sel, lo, hi = sel[keep], lo[keep], hi[keep]
        v_lo = out[lo, sel].astype(np.float64)
        v_hi = out[hi, sel].astype(np.float64)
        x_lo, x_hi = x[lo], x[hi]
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(x_hi > x_lo, (x[i] - x_lo) / (x_hi - x_lo), 0.0)
        out[i, sel] = (v_lo + (v_hi - v_lo) * w).astype(np.float32)
    return out


def fill_linear(reflectance: xr.DataArray) -> xr.DataArray:
    """``reflectance`` (time, band, y, x) float32 with NaN steps filled by :func:`interp_time`
    over the time coordinate (days); lazy with dask (time in one chunk, one band per chunk)."""
    x = ((reflectance["time"].values - reflectance["time"].values[0]) / np.timedelta64(1, "D")).astype(np.float64)
    data = reflectance
    if reflectance.chunks is not None:  # whole time axis per chunk: smaller y/x chunks for long series
        y, xx = reflectance.chunks[2][0], reflectance.chunks[3][0]
        while y * xx * reflectance.sizes["time"] > FILL_CHUNK_ELEMENTS and min(y, xx) > 32:
            y, xx = max(y // 2, 32), max(xx // 2, 32)
        data = reflectance.chunk({"time": -1, "band": 1, "y": y, "x": xx})
    filled = xr.apply_ufunc(interp_time, data, kwargs={"x": x}, input_core_dims=[["time"]],
                            output_core_dims=[["time"]], dask="parallelized", output_dtypes=[np.float32])
    return filled.transpose(*reflectance.dims)


def _joined_ids(item_ids: np.ndarray, members: np.ndarray) -> str:
    return ",".join(s for i in members for s in str(item_ids[i]).split(",") if s)


def _empty_like(template: xr.DataArray, value: Any) -> xr.DataArray:
    return xr.full_like(template, value).reset_coords(drop=True)


def composite_steps(cube: xr.Dataset, grid: TimeGrid, step: np.ndarray, method: Composite) -> tuple[xr.DataArray, xr.DataArray]:
    """Per-step composites (time=steps, band, y, x) float32 (NaN without clear observation) and
    clear counts (time, y, x) uint16 of ``cube``, whose acquisition ``i`` lies in step ``step[i]``."""
    reflectance = cube["reflectance"].reset_coords(drop=True)
    valid = cube["valid"].reset_coords(drop=True)
    masked = reflectance.where(valid)
    bands = ndvi_bands([str(b) for b in cube["band"].values]) if method == "max_ndvi" else None
    fractions = cube["valid_fraction"].values
    empty = _empty_like(masked.isel(time=0, drop=True), np.nan).astype("float32")
    zero = _empty_like(valid.isel(time=0, drop=True), 0).astype("uint16")
    composites, counts = [], []
    for i in range(grid.steps):
        members = np.flatnonzero(step == i)
        if members.size == 0:
            composites.append(empty)
            counts.append(zero)
            continue
        part = masked.isel(time=members)
        composites.append(_step(part, valid.isel(time=members), fractions[members], grid.centres[i], method, bands))
        counts.append(valid.isel(time=members).sum("time").astype("uint16"))
    time = xr.DataArray(grid.starts, dims="time", name="time")
    return xr.concat(composites, dim=time), xr.concat(counts, dim=time)


def composite_cube(cube: xr.Dataset, grid: TimeGrid, *, method: Composite = "median",
                   fill: Fill = "linear") -> xr.Dataset:
    """``cube`` on the regular ``grid`` (the ``composite.zarr`` layout; lazy when ``cube`` is).

    - ``time`` (time,) datetime64[ns]: step starts (``grid.starts``);
    - ``reflectance`` (time, band, y, x) float32: the composite of the step's clear
      observations (``method``), filled (``fill="linear"``) where the step has none; NaN where
      the pixel has no clear observation in the whole series (or with ``fill="none"``);
    - ``valid`` (time, y, x) bool: the step has at least one clear observation (never filled);
    - ``clear_count`` (time, y, x) uint16: clear observations in the step;
    - ``valid_fraction`` (time,) float32: share of AOI pixels with a clear observation;
    - ``aoi_mask`` (y, x) bool, as in the cube; ``item_ids`` (time,) str: the step's item ids,
      comma-joined ("" for a step without acquisition, which is kept as missing);
    - attrs: the cube's plus ``time_grid`` (period, composite, fill, start, end, steps,
      step_ends, acquisitions_per_step, empty_steps, and a warning when the period is shorter
      than the revisit).

    Acquisitions outside the grid (before the AOI's start or after its end) are left out, logged.
    """
    times = cube["time"].values
    step = grid.step_index(times)
    if (step < 0).any():
        log.warning("%d acquisition(s) outside %s .. %s left out: %s", int((step < 0).sum()), grid.first_day,
                    grid.last_day, [str(t)[:10] for t in times[step < 0]])
    reflectance, clear_count = composite_steps(cube, grid, step, method)
    valid = clear_count > 0
    if fill == "linear":
        reflectance = fill_linear(reflectance)
    aoi_mask = cube["aoi_mask"].reset_coords(drop=True).astype(bool)
    inside = max(int(aoi_mask.sum()), 1)
    fraction = ((valid & aoi_mask).sum(("y", "x")) / inside).astype("float32")
    per_step = np.bincount(step[step >= 0], minlength=grid.steps)[: grid.steps]
    ids = cube["item_ids"].values if "item_ids" in cube.coords else np.full(times.size, "", dtype=object)
    labels = [_joined_ids(ids, np.flatnonzero(step == i)) for i in range(grid.steps)]
    record = {**grid.record(), "composite": method, "fill": fill,
              "acquisitions_per_step": [int(n) for n in per_step], "empty_steps": int((per_step == 0).sum())}
    warning = grid_warning(grid, times[step >= 0], record["empty_steps"])
    if warning is not None:
        log.warning("%s", warning)
        record["warning"] = warning
    attrs = {k: v for k, v in cube.attrs.items() if k != "time_grid"}
    ds = xr.Dataset(
        {"reflectance": reflectance, "valid": valid, "clear_count": clear_count, "valid_fraction": fraction,
         "aoi_mask": aoi_mask},
        coords={"item_ids": ("time", np.array(labels, dtype=str)), "band": cube["band"].values,
                "y": cube["y"].values, "x": cube["x"].values},
        attrs={**attrs, "time_grid": record},
    )
    return _store_chunks(ds, cube)


def _store_chunks(ds: xr.Dataset, cube: xr.Dataset) -> xr.Dataset:
    """One step per chunk and the cube's spatial chunks (uniform, as Zarr needs); numpy stays numpy."""
    if cube["reflectance"].chunks is None:
        return ds
    y, x = cube["reflectance"].chunks[2][0], cube["reflectance"].chunks[3][0]
    return ds.chunk({"time": 1, "band": -1, "y": y, "x": x})
