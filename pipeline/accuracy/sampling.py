"""Stratified random sample design for accuracy assessment (Olofsson et al. 2014, sect. 5).

1. Sample size from a target standard error of overall accuracy (eq. 13):
   ``n = (sum_i W_i S_i / S(O))^2`` with ``S_i = sqrt(U_i (1 - U_i))`` from conjectured user's
   accuracies ``U_i`` and ``W_i`` the mapped area proportions (:func:`sample_size_for_overall_accuracy`).
2. Allocation to the strata (map classes): proportional to area, but no stratum below a
   minimum (rare classes, e.g. 50-100 units) and none above its pixel count (:func:`allocate_sample`).
3. Drawing: a seeded stratified random sample of pixel locations without replacement from the
   classified map, nodata excluded (:func:`stratified_sample`).

The resulting :class:`StratifiedSample` carries what :func:`pipeline.accuracy.area.area_adjusted_accuracy`
needs besides the reference labels: its design, strata and mapped areas.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pipeline.errors import AccuracyError

log = logging.getLogger(__name__)


def sample_size_for_overall_accuracy(
    mapped_area_pixels: Sequence[float] | np.ndarray,
    expected_users_accuracy: Sequence[float] | np.ndarray,
    *,
    target_se: float,
) -> int:
    """Total sample size reaching ``target_se`` for overall accuracy (Olofsson eq. 13), rounded up.

    ``mapped_area_pixels``: (k,) mapped pixels per stratum; ``expected_users_accuracy``: (k,)
    conjectured user's accuracies in [0, 1]; ``target_se``: standard error of overall
    accuracy, e.g. 0.01.
    """
    area = np.asarray(mapped_area_pixels, dtype=np.float64).reshape(-1)
    users = np.asarray(expected_users_accuracy, dtype=np.float64).reshape(-1)
    if area.shape != users.shape or area.sum() <= 0 or np.any(area < 0):
        raise AccuracyError(
            "give one non-negative mapped area per stratum (positive total) and one conjectured "
            "user's accuracy per stratum"
        )
    if np.any((users < 0) | (users > 1)):
        raise AccuracyError(f"expected user's accuracies {users.tolist()} must lie in [0, 1]")
    if not 0 < target_se < 1:
        raise AccuracyError(f"target_se must be in (0, 1), got {target_se}")
    w = area / area.sum()
    s = np.sqrt(users * (1 - users))
    return int(math.ceil(float((np.sum(w * s) / target_se) ** 2) - 1e-9))


def allocate_sample(
    n_total: int,
    mapped_area_pixels: Sequence[float] | np.ndarray,
    *,
    min_per_stratum: int = 50,
) -> np.ndarray:
    """Split ``n_total`` units over the strata: proportional to mapped area, but at least
    ``min_per_stratum`` (rare classes) and at most the stratum's pixel count.

    Strata with no mapped pixel get 0. Proportional shares are rounded by largest remainder so
    that the allocation sums to ``n_total``. Returns int64 (k,).
    """
    area = np.asarray(mapped_area_pixels, dtype=np.float64).reshape(-1)
    cap = np.floor(area).astype(np.int64)
    live = cap > 0
    floor_n = np.where(live, np.minimum(min_per_stratum, cap), 0)
    if n_total > int(cap.sum()):
        raise AccuracyError(
            f"sample of {n_total} units exceeds the {int(cap.sum())} mapped pixels; sample fewer"
        )
    if n_total < int(floor_n.sum()):
        raise AccuracyError(
            f"sample of {n_total} units is smaller than {min_per_stratum} per mapped stratum "
            f"({int(floor_n.sum())} in all); raise the sample size or lower min_per_stratum"
        )
    fixed = np.zeros(area.size, dtype=bool)
    alloc = np.zeros(area.size, dtype=np.float64)
    while True:
        free = live & ~fixed
        rest = n_total - alloc[fixed].sum()
        share = np.zeros(area.size)
        if free.any():
            share[free] = rest * area[free] / area[free].sum()
        low = free & (share < floor_n)
        high = free & (share > cap)
        if not (low.any() or high.any()):
            break
        alloc[low], alloc[high] = floor_n[low], cap[high]
        fixed |= low | high
    alloc[free] = share[free]
    out = np.floor(alloc).astype(np.int64)
    remainder = alloc - out
    while out.sum() < n_total:  # largest remainder first (ties: larger stratum), within caps
        cand = np.flatnonzero(live & (out < cap))
        i = cand[np.lexsort((-area[cand], -remainder[cand]))[0]]
        out[i] += 1
        remainder[i] -= 1.0
    while out.sum() > n_total:  # only in corner cases of the caps: trim the largest strata
        cand = np.flatnonzero(out > floor_n)
        out[cand[np.argmax(area[cand])]] -= 1
    return out


@dataclass(frozen=True)
class StratifiedSample:
    """Sample units drawn from a classified map.

    ``rows``/``cols``: int64 pixel indices into the map (y, x); ``stratum``: the map class id
    of every unit; ``class_ids``: the strata in class-table order; ``mapped_area_pixels``:
    mapped pixels of each stratum (the population the sample was drawn from); ``design`` is
    always ``"stratified_random"`` here.
    """

    rows: np.ndarray
    cols: np.ndarray
    stratum: np.ndarray
    class_ids: tuple[int, ...]
    mapped_area_pixels: tuple[int, ...]
    seed: int
    design: Literal["stratified_random"] = "stratified_random"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (e.g. to hand the points to interpreters)."""
        return {
            "design": self.design,
            "seed": self.seed,
            "class_ids": list(self.class_ids),
            "mapped_area_pixels": list(self.mapped_area_pixels),
            "rows": self.rows.tolist(),
            "cols": self.cols.tolist(),
            "stratum": self.stratum.tolist(),
        }


def stratified_sample(
    class_map: np.ndarray,
    allocation: Sequence[int] | Mapping[int, int] | np.ndarray,
    *,
    class_ids: Sequence[int],
    nodata: int = 0,
    seed: int,
) -> StratifiedSample:
    """Draw a stratified random sample of pixels from ``class_map`` without replacement.

    ``class_map``: dims (y, x), integer class ids, ``nodata`` (and 0) excluded. ``allocation``:
    units per stratum, aligned with ``class_ids`` or a ``{class id: n}`` mapping. Units are
    returned grouped by stratum in class-table order, ascending pixel order within a stratum.
    Raises :class:`AccuracyError` when a stratum has fewer pixels than requested or the map
    holds ids outside ``class_ids``.
    """
    cmap = np.asarray(class_map)
    if cmap.ndim != 2:
        raise AccuracyError(f"class_map must be 2-D (y, x), got shape {cmap.shape}")
    ids = [int(c) for c in class_ids]
    if isinstance(allocation, Mapping):
        extra = sorted(set(allocation) - set(ids))
        if extra:
            raise AccuracyError(f"allocation names strata {extra} that are not class ids {ids}")
        alloc = [int(allocation.get(c, 0)) for c in ids]
    else:
        alloc = [int(v) for v in np.asarray(allocation).reshape(-1)]
        if len(alloc) != len(ids):
            raise AccuracyError(f"allocation has {len(alloc)} entries for {len(ids)} classes")
    flat = cmap.reshape(-1)
    mapped = (flat != nodata) & (flat != 0)
    present = set(np.unique(flat[mapped]).tolist())
    unknown = sorted(present - set(ids))
    if unknown:
        raise AccuracyError(f"the map holds class ids {unknown} not in the class table (ids {ids})")
    rng = np.random.default_rng(seed)
    rows, cols, strata, counts = [], [], [], []
    for cid, n in zip(ids, alloc):
        idx = np.flatnonzero(flat == cid)
        counts.append(int(idx.size))
        if n < 0 or n > idx.size:
            raise AccuracyError(
                f"stratum {cid} has {idx.size} mapped pixels but {n} units were requested; "
                "lower its allocation (allocate_sample caps it)"
            )
        chosen = np.sort(rng.choice(idx, size=n, replace=False))
        r, c = np.divmod(chosen, cmap.shape[1])
        rows.append(r)
        cols.append(c)
        strata.append(np.full(n, cid, dtype=np.int64))
    log.info("drew %d sample units over %d strata", sum(alloc), len(ids))
    return StratifiedSample(
        rows=np.concatenate(rows).astype(np.int64),
        cols=np.concatenate(cols).astype(np.int64),
        stratum=np.concatenate(strata),
        class_ids=tuple(ids),
        mapped_area_pixels=tuple(counts),
        seed=seed,
    )
