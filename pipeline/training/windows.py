"""Sliding temporal windows and the training / validation patches of a run region.

A window ``T_k = (X_k .. X_{k+t-1})`` is identified by its END index ``e = k + t - 1`` (the
labelled date it predicts). A patch is identified by its top-left pixel ``(y0, x0)``.

The run region (:mod:`pipeline.split`: the AOI's test design plus the run's validation blocks)
says which pixels' labels each loss may use; patches themselves may cross region borders.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from pipeline.errors import TrainingError
from pipeline.split.validation import VAL

log = logging.getLogger(__name__)



def window_ends(n_times: int, time_steps: int) -> np.ndarray:
    """End indices ``t-1 .. n_times-1`` of all windows of length ``time_steps``.

    Raises TrainingError when the series is shorter than one window.
    """
    if time_steps > n_times:
        raise TrainingError(
            f"window length time_steps={time_steps} is longer than the series ({n_times} dates, or steps of its "
            f"time grid); lower train option 'time_steps' to at most {n_times}, or add dates (widen the AOI's "
            f"start/end, or shorten cube.period)"
        )
    return np.arange(time_steps - 1, n_times, dtype=np.int64)


def axis_origins(size: int, patch: int, stride: int, start: int = 0, stop: int | None = None) -> list[int]:
    """Patch starts in ``[start, stop - patch]`` every ``stride``, plus one flush with ``stop``."""
    stop = size if stop is None else stop
    if stop - start < patch:
        return []
    starts = list(range(start, stop - patch + 1, stride))
    if starts[-1] != stop - patch:
        starts.append(stop - patch)
    return starts


def patch_origins(height: int, width: int, *, patch: tuple[int, int], stride: int) -> np.ndarray:
    """Top-left corners (M, 2) int64 of patches covering an image, the last ones flush."""
    ys = axis_origins(height, patch[0], stride)
    xs = axis_origins(width, patch[1], stride)
    return np.array([(y, x) for y in ys for x in xs], dtype=np.int64).reshape(-1, 2)


def select_label_dates(
    labelled: np.ndarray, *, fraction: float, mode: str, seed: int
) -> np.ndarray:
    """Keep ``floor(fraction * n)`` (at least 1) of the labelled date indices ``labelled``.

    ``mode`` "chronological" drops the earliest dates first (the paper's removal), "random" a
    seeded random subset. Returns the kept indices, sorted.
    """
    labelled = np.sort(np.asarray(labelled, dtype=np.int64))
    if fraction >= 1.0 or labelled.size == 0:
        return labelled
    keep = max(1, math.floor(fraction * labelled.size))
    if mode == "chronological":
        return labelled[labelled.size - keep :]
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(labelled, size=keep, replace=False))


@dataclass(frozen=True)
class SpatialSplit:
    """Result of :func:`plan_patches`.

    ``region``: (H, W) uint8 run region (TRAIN / TEST / BUFFER / VAL, :mod:`pipeline.split`);
    ``train_origins``: (M, 2) int64 corners of every training patch candidate (windows are then
    kept where they hold a training label, or data for the semi-supervised model);
    ``val_origins``: (M_val, 2) corners of the non-overlapping patches holding validation pixels;
    ``val_owned``: (M_val, ph, pw) bool, the pixels each validation patch scores (every
    validation pixel is scored by exactly one patch); ``patch``: (ph, pw).
    """

    region: np.ndarray
    train_origins: np.ndarray
    val_origins: np.ndarray
    val_owned: np.ndarray
    patch: tuple[int, int]


def _window_sums(mask: np.ndarray, origins: np.ndarray, patch: tuple[int, int]) -> np.ndarray:
    """Number of True pixels of ``mask`` (..., H, W) in each patch -> (..., M)."""
    ii = np.pad(mask.astype(np.int64).cumsum(-1).cumsum(-2), [(0, 0)] * (mask.ndim - 2) + [(1, 0), (1, 0)])
    y0, x0 = origins[:, 0], origins[:, 1]
    y1, x1 = y0 + patch[0], x0 + patch[1]
    return ii[..., y1, x1] - ii[..., y0, x1] - ii[..., y1, x0] + ii[..., y0, x0]


def plan_patches(region: np.ndarray, *, patch: int, stride: int) -> SpatialSplit:
    """Training and validation patches over a run ``region`` (H, W) (see :class:`SpatialSplit`).

    Training patches cover the whole grid every ``stride`` pixels (the last ones flush): the
    labels of pixels outside the training region are masked out of the loss, so a patch that
    overlaps a validation, buffer or test block is kept for its training pixels. Validation
    patches tile the grid without overlap and are kept where they hold a validation pixel.
    ``patch`` larger than the grid is clamped to it.
    """
    height, width = region.shape
    ph, pw = min(patch, height), min(patch, width)
    if (ph, pw) != (patch, patch):
        log.warning("patch %d px clamped to the %dx%d grid", patch, height, width)
    train_origins = patch_origins(height, width, patch=(ph, pw), stride=stride)
    tiles = patch_origins(height, width, patch=(ph, pw), stride=min(ph, pw))
    val_origins = tiles[_window_sums(region == VAL, tiles, (ph, pw)) > 0]
    covered = np.zeros((height, width), dtype=bool)
    owned = np.zeros((len(val_origins), ph, pw), dtype=bool)
    for k, (y, x) in enumerate(val_origins):
        owned[k] = ~covered[y : y + ph, x : x + pw]
        covered[y : y + ph, x : x + pw] = True
    log.info("%d training patch positions and %d validation patches of %dx%d px", len(train_origins),
             len(val_origins), ph, pw)
    return SpatialSplit(region, train_origins, val_origins, owned, (ph, pw))


def patch_windows(
    origins: np.ndarray, ends: np.ndarray, keep: np.ndarray, *, patch: tuple[int, int]
) -> np.ndarray:
    """All (end, y0, x0, origin index) of patches holding at least one True pixel of ``keep``.

    ``origins``: (M, 2); ``ends``: (E,) window end indices; ``keep``: (T, H, W) bool (e.g.
    labelled, or has data). Returns (N, 4) int64, ordered by end then origin.
    """
    rows = [np.zeros((0, 4), dtype=np.int64)]
    for e in ends if origins.size else []:  # one date at a time: bounded memory on large grids
        m_idx = np.nonzero(_window_sums(keep[e], origins, patch) > 0)[0]
        rows.append(np.column_stack([np.full(m_idx.size, e), origins[m_idx], m_idx]))
    return np.concatenate(rows).astype(np.int64)


def pixel_windows(ends: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """All (end, y, x) with ``keep[end, y, x]`` True, ``keep`` (T, H, W) bool -> (N, 3) int64."""
    sub = keep[ends]
    e_idx, ys, xs = np.nonzero(sub)
    return np.stack([ends[e_idx], ys, xs], axis=1).astype(np.int64)
