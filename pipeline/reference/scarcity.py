"""Label scarcity as the paper studies it: fewer labelled dates, sparser labelled pixels.

Section 5.2 of the Semi-LSTM paper trains with 100 %, 50 %, 20 % and 10 % of the labelled
images, "rounded down", removing labels "chronologically". The paper's argument that the
many-to-one network never uses the first labels of the series (so removing up to half of the
labels hardly changes the results) only holds when the *earliest* labels are removed; hence
``removal="chronological"`` drops the earliest labelled dates and keeps the most recent
``floor(n * fraction)``. ``removal="random"`` keeps a seeded random subset instead.

Sparse pixel labels simulate point surveys: on every kept date, each class keeps
``max(1, floor(n * pixel_fraction))`` of its labelled pixels (stratified per date and class,
so small classes survive), or at most ``points_per_class`` of them. Pixels are drawn without
replacement with a seeded generator.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np

from pipeline.errors import LabelError

log = logging.getLogger(__name__)

DateRemoval = Literal["chronological", "random"]

# floor(n * f) must not lose a date to binary rounding (0.29 * 100 = 28.999999999999996).
_EPS = 1e-9


def n_kept(n: int, fraction: float) -> int:
    """``floor(n * fraction)``, robust to binary rounding (the paper's "rounded down")."""
    return int(math.floor(n * fraction + _EPS))


def labelled_dates(labels: np.ndarray) -> np.ndarray:
    """Time indices holding at least one labelled pixel.

    ``labels``: dims (time, y, x) uint8 class ids, 0 = unlabelled. Returns int64, ascending.
    """
    return np.flatnonzero(np.asarray(labels).reshape(labels.shape[0], -1).any(axis=1))


def select_dates(
    labelled: np.ndarray,
    *,
    fraction: float,
    removal: DateRemoval,
    seed: int,
) -> np.ndarray:
    """Which of the ``labelled`` time indices (ascending) to keep.

    Keeps ``floor(len(labelled) * fraction)``: the most recent ones for
    ``removal="chronological"`` (earliest removed), a seeded random subset for ``"random"``.
    Returns the kept indices, ascending. Raises :class:`LabelError` when that leaves none.
    """
    labelled = np.sort(np.asarray(labelled, dtype=np.int64))
    if not 0.0 < fraction <= 1.0:
        raise LabelError(f"date_fraction must be in (0, 1], got {fraction}")
    keep = n_kept(labelled.size, fraction)
    if keep == 0:
        raise LabelError(
            f"date_fraction {fraction} of {labelled.size} labelled date(s) keeps none (rounded "
            "down); raise date_fraction or label more dates"
        )
    if removal == "chronological":
        kept = labelled[labelled.size - keep :]
    elif removal == "random":
        rng = np.random.default_rng(seed)
        kept = np.sort(rng.choice(labelled, size=keep, replace=False))
    else:
        raise LabelError(f"date_removal must be 'chronological' or 'random', got {removal!r}")
    log.info("keeping %d of %d labelled dates (%s removal)", keep, labelled.size, removal)
    return kept


def keep_dates(labels: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """A copy of ``labels`` (time, y, x) uint8 with every date not in ``kept`` set to 0."""
    out = np.zeros_like(labels)
    kept = np.asarray(kept, dtype=np.int64)
    out[kept] = labels[kept]
    return out


def thin_pixels(
    labels: np.ndarray,
    *,
    pixel_fraction: float = 1.0,
    points_per_class: int | None = None,
    seed: int,
) -> np.ndarray:
    """Keep a seeded random subset of the labelled pixels, per date and class.

    ``labels``: dims (time, y, x) uint8 class ids, 0 = unlabelled. Per date and class with
    ``n`` labelled pixels, keeps ``max(1, floor(n * pixel_fraction))`` of them, or
    ``min(n, points_per_class)`` when ``points_per_class`` is given (the two are exclusive).
    Returns a new array of the same shape and dtype, the dropped pixels set to 0.
    """
    if points_per_class is not None and pixel_fraction < 1.0:
        raise LabelError("give either pixel_fraction < 1 or points_per_class, not both")
    if points_per_class is None and pixel_fraction >= 1.0:
        return labels.copy()
    if points_per_class is not None and points_per_class < 1:
        raise LabelError(f"points_per_class must be >= 1, got {points_per_class}")
    if points_per_class is None and not 0.0 < pixel_fraction <= 1.0:
        raise LabelError(f"pixel_fraction must be in (0, 1], got {pixel_fraction}")
    rng = np.random.default_rng(seed)
    out = np.zeros(labels.shape, dtype=labels.dtype)  # C order: out[t].reshape(-1) is a view
    before = after = 0
    for t in range(labels.shape[0]):
        flat = labels[t].reshape(-1)
        dst = out[t].reshape(-1)
        for cid in np.unique(flat):
            if cid == 0:
                continue
            idx = np.flatnonzero(flat == cid)
            if points_per_class is not None:
                k = min(idx.size, points_per_class)
            else:
                k = max(1, n_kept(idx.size, pixel_fraction))
            chosen = rng.choice(idx, size=k, replace=False)
            dst[chosen] = cid
            before += idx.size
            after += k
    log.info("kept %d of %d labelled pixels", after, before)
    return out


def apply_scarcity(
    labels: np.ndarray,
    *,
    date_fraction: float = 1.0,
    date_removal: DateRemoval = "chronological",
    pixel_fraction: float = 1.0,
    points_per_class: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Date removal then pixel thinning (see the module docstring).

    ``labels``: dims (time, y, x) uint8, 0 = unlabelled. Returns the reduced labels (same
    shape/dtype) and the kept labelled time indices (int64, ascending).
    """
    labelled = labelled_dates(labels)
    if labelled.size == 0:
        raise LabelError("no labelled pixel on any cube date; check the labels and their dates")
    kept = select_dates(labelled, fraction=date_fraction, removal=date_removal, seed=seed)
    out = keep_dates(labels, kept) if kept.size < labelled.size else labels.copy()
    out = thin_pixels(out, pixel_fraction=pixel_fraction, points_per_class=points_per_class, seed=seed)
    return out, kept
