"""Sliding temporal windows, training patches and the spatially blocked train/validation split.

A window ``T_k = (X_k .. X_{k+t-1})`` is identified by its END index ``e = k + t - 1`` (the
labelled date it predicts). A patch is identified by its top-left pixel ``(y0, x0)``.

Spatial split: the grid is cut into square blocks of ``block`` pixels; a seeded random share
of the blocks is held out for validation. Training pixels closer than ``buffer`` pixels
(Chebyshev distance) to a validation block form a buffer that nobody uses. A patch is a
training patch only if all its pixels are training pixels, a validation patch only if all are
validation pixels: no patch straddles the two, and training patches stay ``buffer`` pixels
away from validation ones.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipeline.errors import TrainingError

log = logging.getLogger(__name__)

TRAIN, VAL, BUFFER = 0, 1, 2


def window_ends(n_times: int, time_steps: int) -> np.ndarray:
    """End indices ``t-1 .. n_times-1`` of all windows of length ``time_steps``.

    Raises TrainingError when the series is shorter than one window.
    """
    if time_steps > n_times:
        raise TrainingError(
            f"window length time_steps={time_steps} is longer than the series ({n_times} dates); "
            f"lower train option 'time_steps' to at most {n_times} or add dates"
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
    """Result of :func:`blocked_split`.

    ``region``: (H, W) int8, TRAIN / VAL / BUFFER; ``train_origins``/``val_origins``: (M, 2)
    int64 patch corners; ``val_owned``: (M_val, ph, pw) bool, the pixels each validation patch
    scores (every validation pixel is scored by exactly one patch); ``patch``: (ph, pw).
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


def blocked_split(
    height: int, width: int, *, patch: int, stride: int, block: int, val_fraction: float,
    buffer: int, seed: int,
) -> SpatialSplit:
    """Spatially blocked split of an ``height`` x ``width`` grid (see module doc).

    ``patch`` larger than the grid is clamped to it. Raises TrainingError when no training or
    (with ``val_fraction > 0``) no validation patch fits.
    """
    ph, pw = min(patch, height), min(patch, width)
    if (ph, pw) != (patch, patch):
        log.warning("patch %d px clamped to the %dx%d grid", patch, height, width)
    nby, nbx = math.ceil(height / block), math.ceil(width / block)
    n_blocks = nby * nbx
    region = np.full((height, width), TRAIN, dtype=np.int8)
    if val_fraction > 0:
        if n_blocks < 2:
            raise TrainingError(
                f"the {height}x{width} px grid holds a single {block} px block, so no spatial "
                f"validation split is possible; lower 'block_size'/'patch' or set 'val_fraction' 0"
            )
        n_val = min(max(1, round(val_fraction * n_blocks)), n_blocks - 1)
        val_ids = np.random.default_rng(seed).choice(n_blocks, size=n_val, replace=False)
        block_id = (np.arange(height)[:, None] // block) * nbx + np.arange(width)[None, :] // block
        val = np.isin(block_id, val_ids)
        if buffer > 0:
            near = ndimage.maximum_filter(val, size=2 * buffer + 1, mode="constant", cval=False)
            region[near] = BUFFER
        region[val] = VAL

    cands: set[tuple[int, int]] = {tuple(o) for o in patch_origins(height, width, patch=(ph, pw), stride=stride)}
    tiles: set[tuple[int, int]] = {tuple(o) for o in patch_origins(height, width, patch=(ph, pw), stride=min(ph, pw))}
    for by in range(nby):
        for bx in range(nbx):
            y0, x0 = by * block, bx * block
            y1, x1 = min(y0 + block, height), min(x0 + block, width)
            ys, xs = axis_origins(height, ph, stride, y0, y1), axis_origins(width, pw, stride, x0, x1)
            cands.update((y, x) for y in ys for x in xs)
            ys, xs = axis_origins(height, ph, ph, y0, y1), axis_origins(width, pw, pw, x0, x1)
            tiles.update((y, x) for y in ys for x in xs)
    area = ph * pw
    train_c = np.array(sorted(cands), dtype=np.int64).reshape(-1, 2)
    train_origins = train_c[_window_sums(region == TRAIN, train_c, (ph, pw)) == area]
    val_c = np.array(sorted(tiles), dtype=np.int64).reshape(-1, 2)
    val_origins = val_c[_window_sums(region == VAL, val_c, (ph, pw)) == area] if val_fraction > 0 else val_c[:0]

    if train_origins.size == 0:
        raise TrainingError(
            f"no {ph}x{pw} px training patch fits the training blocks of the {height}x{width} grid; "
            f"lower 'patch', 'buffer' or 'val_fraction', or raise 'block_size'"
        )
    if val_fraction > 0 and val_origins.size == 0:
        raise TrainingError(
            f"no {ph}x{pw} px validation patch fits inside a validation block; make 'block_size' "
            f">= 'patch' or set 'val_fraction' 0"
        )
    covered = np.zeros((height, width), dtype=bool)
    owned = np.zeros((len(val_origins), ph, pw), dtype=bool)
    for k, (y, x) in enumerate(val_origins):
        owned[k] = ~covered[y : y + ph, x : x + pw]
        covered[y : y + ph, x : x + pw] = True
    log.info(
        "spatial split: %d training and %d validation patches of %dx%d px (%d buffer px)",
        len(train_origins), len(val_origins), ph, pw, int((region == BUFFER).sum()),
    )
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
