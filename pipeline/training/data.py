"""Read features.zarr + labels.zarr (as xarray Datasets) into validated in-memory arrays.

Masking rule (one rule for the whole training package): a pixel-date is *usable* when every
feature channel is finite. Non-usable pixel-dates (NaN nodata/fill, Inf from float16
overflow) are set to 0 after standardisation in the model input and are never counted in any
loss term, even when they carry a label. The ``valid`` flag of features.zarr (clear per QA)
is NOT used by default: the paper keeps cloud and shadow as classes, so cloudy pixels keep
their (finite) features and their cloud/shadow labels. ``use_valid_mask=True`` adds
``valid == False`` to the non-usable pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from pipeline.errors import GridError, LabelError, TrainingError
from pipeline.reference.classes import LandCoverClass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingData:
    """Arrays of one AOI on one grid.

    ``features``: (time, channel, y, x) float16, NaN where not usable; ``usable``: (time, y, x)
    bool; ``labels``: (time, y, x) int16 class indices 0..K-1 (class table order), -1 =
    unlabelled or not usable; ``times``: (time,) datetime64[ns]; ``crs``/``transform``: grid.
    """

    features: np.ndarray
    usable: np.ndarray
    labels: np.ndarray
    classes: tuple[LandCoverClass, ...]
    times: np.ndarray
    crs: str
    transform: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        t, c, h, w = self.features.shape
        return t, c, h, w


def _check_grid(features: xr.Dataset, labels: xr.Dataset) -> None:
    fc, lc = features.attrs.get("crs"), labels.attrs.get("crs")
    if fc != lc:
        raise GridError(f"features CRS {fc!r} differs from labels CRS {lc!r}; rebuild labels.zarr on the cube grid")
    ft, lt = features.attrs.get("transform"), labels.attrs.get("transform")
    if ft is not None and lt is not None and not np.allclose(np.asarray(ft, float), np.asarray(lt, float)):
        raise GridError(f"features transform {list(ft)} differs from labels transform {list(lt)}; rebuild labels.zarr on the cube grid")
    for dim in ("y", "x"):
        fs, ls = features.sizes.get(dim), labels.sizes.get(dim)
        if fs != ls:
            raise GridError(
                f"features and labels disagree on the grid: {dim} size {fs} vs {ls}; rebuild labels.zarr on the cube grid"
            )
        if dim in features.coords and dim in labels.coords and not np.allclose(features[dim].values, labels[dim].values):
            raise GridError(f"features and labels {dim} coordinates differ; rebuild labels.zarr on the cube grid")


def _class_lut(labels: np.ndarray, classes: Sequence[LandCoverClass]) -> np.ndarray:
    counts = np.bincount(labels.ravel(), minlength=256)
    table = {c.id for c in classes}
    unknown = [i for i in np.nonzero(counts)[0].tolist() if i != 0 and i not in table]
    if unknown:
        detail = ", ".join(f"{i} ({int(counts[i])} px)" for i in unknown)
        raise LabelError(
            f"labels contain class ids not in the class table: {detail}; add them to 'classes' "
            f"(ids {sorted(table)}) or fix the label rasters"
        )
    lut = np.full(256, -1, dtype=np.int16)
    for k, c in enumerate(classes):
        lut[c.id] = k
    return lut


def window_has_clear(valid: np.ndarray, time_steps: int) -> np.ndarray:
    """(T, H, W) bool: a clear observation (``valid``, (T, H, W) bool) in the window of
    ``time_steps`` steps ending at each step."""
    csum = np.cumsum(valid, axis=0, dtype=np.int32)
    before = np.zeros_like(csum)
    before[time_steps:] = csum[:-time_steps]
    return (csum - before) > 0


def load_training_data(
    features: xr.Dataset, labels: xr.Dataset, *, classes: Sequence[LandCoverClass], use_valid_mask: bool = False,
    time_steps: int | None = None,
) -> TrainingData:
    """Validate and load the ``features`` and ``labels`` stores (layouts in
    :mod:`pipeline.raster.zarr_io`) into a :class:`TrainingData`.

    Labels are aligned on the feature dates (dates without labels are unlabelled). Raises
    GridError (grids differ), LabelError (unknown class ids, no common date) or TrainingError.
    With ``time_steps`` and features on a regular time grid (attrs ``time_grid``), pixel-dates
    whose window of ``time_steps`` steps holds no clear step are not usable (their filled values
    are kept as inputs, but no loss term counts them).
    """
    if "features" not in features or "labels" not in labels:
        raise TrainingError("features.zarr needs a 'features' variable and labels.zarr a 'labels' variable")
    fv = features["features"]
    if fv.dims != ("time", "channel", "y", "x"):
        raise TrainingError(f"features dims {fv.dims} != ('time', 'channel', 'y', 'x'); rebuild features.zarr")
    lv = labels["labels"]
    if lv.dims != ("time", "y", "x"):
        raise LabelError(f"labels dims {lv.dims} != ('time', 'y', 'x'); rebuild labels.zarr")
    _check_grid(features, labels)
    times = features["time"].values
    if "time" in labels.coords and "time" in features.coords:
        common = np.intersect1d(times, labels["time"].values)
        if common.size == 0:
            raise LabelError("labels share no date with the features; build labels.zarr for the cube's dates")
        dropped = labels.sizes["time"] - common.size
        if dropped:
            log.warning("%d label dates are not feature dates and are ignored", dropped)
        lv = lv.reindex(time=times, fill_value=0)
    elif lv.sizes["time"] != fv.sizes["time"]:
        raise LabelError(f"labels have {lv.sizes['time']} dates, features {fv.sizes['time']}; align them")

    raw_labels = np.asarray(lv.values)
    if raw_labels.dtype.kind not in "ui" or raw_labels.min(initial=0) < 0 or raw_labels.max(initial=0) > 255:
        raise LabelError(f"labels must be uint8 class ids, got dtype {raw_labels.dtype}; rebuild labels.zarr")
    lut = _class_lut(raw_labels.astype(np.uint8), classes)
    label_idx = lut[raw_labels.astype(np.uint8)]

    feats = np.asarray(fv.values, dtype=np.float16)
    usable = np.empty(label_idx.shape, dtype=bool)
    for t in range(feats.shape[0]):  # per date: bounded temporaries
        usable[t] = np.isfinite(feats[t]).all(axis=0)
    if use_valid_mask and "valid" in features:
        usable &= np.asarray(features["valid"].values, dtype=bool)
    for t in range(feats.shape[0]):
        feats[t][:, ~usable[t]] = np.nan
    if time_steps is not None and features.attrs.get("time_grid") and "valid" in features:
        # gap-filled composites: a pixel whose window holds no clear step has no data to learn from
        usable &= window_has_clear(np.asarray(features["valid"].values, dtype=bool), time_steps)
    lost = int(((label_idx >= 0) & ~usable).sum())
    if lost:
        log.warning("%d labelled pixel-dates have no usable features and are ignored", lost)
    label_idx[~usable] = -1
    transform = tuple(float(v) for v in features.attrs.get("transform", ()))
    return TrainingData(feats, usable, label_idx, tuple(classes), times, str(features.attrs.get("crs")), transform)


def channel_statistics(features: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (C,) float64 over usable pixel-dates of ``features``
    (time, channel, y, x). Channels without usable values get mean 0, std 1."""
    c = features.shape[1]
    s1, s2, n = np.zeros(c), np.zeros(c), 0
    for t in range(features.shape[0]):
        v = features[t][:, usable[t]].astype(np.float64)
        s1 += v.sum(axis=1)
        s2 += (v * v).sum(axis=1)
        n += v.shape[1]
    if n == 0:
        return np.zeros(c), np.ones(c)
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
    return mean, np.where(std > 1e-6, std, 1.0)
