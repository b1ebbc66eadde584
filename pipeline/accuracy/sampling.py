"""Stratified random sample design for accuracy assessment (Olofsson et al. 2014, sect. 5).

1. Sample size from a target standard error of overall accuracy (eq. 13):
   ``n = (sum_i W_i S_i / S(O))^2`` with ``S_i = sqrt(U_i (1 - U_i))`` from conjectured user's
   accuracies ``U_i`` and ``W_i`` the mapped area proportions (:func:`sample_size_for_overall_accuracy`).
2. Allocation to the strata (map classes): proportional to area, but every mapped stratum gets
   at least a minimum (rare classes, e.g. 50-100 units; the whole stratum, a census, when it is
   smaller) even when the total then exceeds eq. 13's, and none more than it has pixels
   (:func:`allocate_sample`).
3. Drawing: a seeded stratified random sample of pixel locations without replacement from the
   classified map, nodata excluded, optionally only inside a sampling frame
   (:func:`stratified_sample`); :func:`draw_stratified_sample` does 1-3 in one call.

Sampling frame. ``within`` restricts where units may fall (e.g. the spatial test blocks, so that
no unit lies on a training location). The strata weights ``W_h`` stay those of the whole map
(the population the areas are about); units are drawn only inside the frame, so the estimates
apply the error rates observed in the frame to the whole map's strata. That assumes the frame's
pixels of a map class are as often right or wrong as the class's pixels elsewhere (true in
expectation when the frame is a random set of blocks); the 95 % intervals cover the sampling
error, not a departure from that assumption.

The resulting :class:`StratifiedSample` carries what :func:`pipeline.accuracy.area.area_adjusted_accuracy`
needs besides the reference labels: its design, frame, strata and mapped areas.
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
    frame_pixels: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Split about ``n_total`` units over the strata: proportional to mapped area, but at least
    ``min_per_stratum`` per stratum (rare classes) and at most the pixels it can be drawn from.

    ``mapped_area_pixels``: (k,) pixels of each stratum in the whole map (the proportions).
    ``frame_pixels``: (k,) pixels of each stratum inside the sampling frame (the caps); default
    the mapped pixels (the frame is the map). Every stratum with a pixel in the frame gets at
    least ``min(min_per_stratum, its frame pixels)`` units (a census of a smaller stratum), even
    when the floors add up to more than ``n_total``: the total then grows to their sum. A total
    above all frame pixels shrinks to them (a census of the frame). Strata with no frame pixel
    get 0 (a warning names them when they are mapped). Proportional shares are rounded by
    largest remainder. Returns int64 (k,).
    """
    area = np.asarray(mapped_area_pixels, dtype=np.float64).reshape(-1)
    frame = area if frame_pixels is None else np.asarray(frame_pixels, dtype=np.float64).reshape(-1)
    if frame.shape != area.shape or np.any(area < 0) or np.any(frame < 0):
        raise AccuracyError(
            f"{area.size} mapped areas and {frame.size} frame pixel counts: give one non-negative "
            "count of each per stratum, in the same class order"
        )
    cap = np.floor(frame).astype(np.int64)
    live = cap > 0
    if not live.any():
        raise AccuracyError(
            "no mapped pixel lies inside the sampling frame; check the frame mask (within) or "
            "draw the sample from the whole map"
        )
    unreachable = np.flatnonzero((area > 0) & ~live)
    if unreachable.size:
        log.warning("strata %s are mapped but have no pixel in the sampling frame: no unit for them",
                    unreachable.tolist())
    floor_n = np.where(live, np.minimum(min_per_stratum, cap), 0)
    n = min(max(int(n_total), int(floor_n.sum())), int(cap.sum()))
    if n != n_total:
        log.info("sample of %d units instead of %d: at least %d per stratum (or its census), at most "
                 "the %d pixels of the frame", n, n_total, min_per_stratum, int(cap.sum()))
    weight = np.where(live, area, 0.0)
    if weight.sum() <= 0:  # frame pixels but no mapped area given: proportional to the frame
        weight = cap.astype(np.float64)
    share = _proportional_within_bounds(n, weight, floor_n, cap, live)
    return _round_to_total(share, n, weight, floor_n, cap, live)


def _proportional_within_bounds(n: int, weight: np.ndarray, floor_n: np.ndarray, cap: np.ndarray,
                                live: np.ndarray) -> np.ndarray:
    """Real-valued shares of ``n`` proportional to ``weight``, each clipped to [floor, cap] and the
    rest re-spread over the unclipped strata until none is out of bounds. (k,) float64."""
    fixed = np.zeros(weight.size, dtype=bool)
    alloc = np.zeros(weight.size, dtype=np.float64)
    while True:
        free = live & ~fixed
        rest = n - alloc[fixed].sum()
        share = np.zeros(weight.size)
        if free.any() and weight[free].sum() > 0:
            share[free] = rest * weight[free] / weight[free].sum()
        low = free & (share < floor_n)
        high = free & (share > cap)
        if not (low.any() or high.any()):
            break
        alloc[low], alloc[high] = floor_n[low], cap[high]
        fixed |= low | high
    alloc[free] = share[free]
    return alloc


def _round_to_total(alloc: np.ndarray, n: int, weight: np.ndarray, floor_n: np.ndarray, cap: np.ndarray,
                    live: np.ndarray) -> np.ndarray:
    """Integer allocation summing to ``n``: floors of ``alloc``, then one more unit to the largest
    remainders (ties: larger stratum) within the caps. int64 (k,)."""
    out = np.floor(alloc + 1e-9).astype(np.int64)
    remainder = alloc - out
    while out.sum() < n:
        cand = np.flatnonzero(live & (out < cap))
        i = cand[np.lexsort((-weight[cand], -remainder[cand]))[0]]
        out[i] += 1
        remainder[i] -= 1.0
    while out.sum() > n:  # only in corner cases of the caps: trim the largest strata
        cand = np.flatnonzero(out > floor_n)
        out[cand[np.argmax(weight[cand])]] -= 1
    return out


@dataclass(frozen=True)
class StratifiedSample:
    """Sample units drawn from a classified map.

    ``rows``/``cols``: int64 pixel indices into the map (y, x); ``stratum``: the map class id
    of every unit; ``class_ids``: the strata in class-table order; ``mapped_area_pixels``:
    mapped pixels of each stratum in the whole map (the strata weights); ``design`` is always
    ``"stratified_random"`` here. ``frame``: where units could fall, ``"map"`` (every mapped
    pixel) or the name of the frame mask (e.g. ``"test_blocks"``); ``frame_area_pixels``: the
    pixels of each stratum inside it (the population the units were drawn from; equal to
    ``mapped_area_pixels`` for ``"map"``, None in samples made before frames existed).
    """

    rows: np.ndarray
    cols: np.ndarray
    stratum: np.ndarray
    class_ids: tuple[int, ...]
    mapped_area_pixels: tuple[int, ...]
    seed: int
    design: Literal["stratified_random"] = "stratified_random"
    frame: str = "map"
    frame_area_pixels: tuple[int, ...] | None = None

    @property
    def frame_pixels(self) -> int:
        """Mapped pixels inside the sampling frame (all strata)."""
        return int(sum(self.frame_area_pixels if self.frame_area_pixels is not None else self.mapped_area_pixels))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (e.g. to hand the points to interpreters)."""
        frame_counts = self.frame_area_pixels if self.frame_area_pixels is not None else self.mapped_area_pixels
        return {
            "design": self.design,
            "seed": self.seed,
            "frame": self.frame,
            "frame_pixels": self.frame_pixels,
            "class_ids": list(self.class_ids),
            "mapped_area_pixels": [int(v) for v in self.mapped_area_pixels],
            "frame_area_pixels": [int(v) for v in frame_counts],
            "rows": self.rows.tolist(),
            "cols": self.cols.tolist(),
            "stratum": self.stratum.tolist(),
        }


def _allocation_list(allocation: Sequence[int] | Mapping[int, int] | np.ndarray, ids: list[int]) -> list[int]:
    """Units per stratum aligned with ``ids`` from a sequence or a ``{class id: n}`` mapping."""
    if isinstance(allocation, Mapping):
        extra = sorted(set(allocation) - set(ids))
        if extra:
            raise AccuracyError(f"allocation names strata {extra} that are not class ids {ids}")
        return [int(allocation.get(c, 0)) for c in ids]
    alloc = [int(v) for v in np.asarray(allocation).reshape(-1)]
    if len(alloc) != len(ids):
        raise AccuracyError(f"allocation has {len(alloc)} entries for {len(ids)} classes")
    return alloc


def _frame_mask(within: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The frame mask flattened, checked: (y, x) bool of the map's shape, or None."""
    if within is None:
        return None
    mask = np.asarray(within)
    if mask.shape != shape or mask.dtype != bool:
        raise AccuracyError(
            f"the sampling frame mask (within) is {mask.dtype} {mask.shape}, the map {shape}; give a "
            "bool (y, x) mask of the map's grid, True where units may be drawn"
        )
    return mask.reshape(-1)


def _choose(rng: np.random.Generator, idx: np.ndarray, n: int, cid: int, *, frame: str | None) -> np.ndarray:
    """``n`` of the flat pixel indices ``idx`` of stratum ``cid``, without replacement, ascending."""
    if n < 0 or n > idx.size:
        where = "mapped pixels" if frame is None else f"pixels inside the sampling frame ({frame})"
        raise AccuracyError(
            f"stratum {cid} has {idx.size} {where} but {n} units were requested; lower its "
            "allocation (allocate_sample caps it when given the frame's pixel counts)"
        )
    return np.sort(rng.choice(idx, size=n, replace=False))


def stratified_sample(
    class_map: np.ndarray,
    allocation: Sequence[int] | Mapping[int, int] | np.ndarray,
    *,
    class_ids: Sequence[int],
    nodata: int = 0,
    seed: int,
    within: np.ndarray | None = None,
    frame: str | None = None,
) -> StratifiedSample:
    """Draw a stratified random sample of pixels from ``class_map`` without replacement.

    ``class_map``: dims (y, x), integer class ids, ``nodata`` (and 0) excluded. ``allocation``:
    units per stratum, aligned with ``class_ids`` or a ``{class id: n}`` mapping. ``within``:
    optional sampling frame, (y, x) bool, True where a unit may be drawn (e.g. the spatial test
    blocks); the strata weights stay the whole map's (module docstring: the estimates then apply
    the frame's error rates to the whole map). ``frame``: the frame's name in the output,
    default ``"map"`` without a mask and ``"test_blocks"`` with one. Units are returned grouped
    by stratum in class-table order, ascending pixel order within a stratum. Raises
    :class:`AccuracyError` when a stratum has fewer frame pixels than requested, the mask does
    not fit the map or the map holds ids outside ``class_ids``.
    """
    cmap = np.asarray(class_map)
    if cmap.ndim != 2:
        raise AccuracyError(f"class_map must be 2-D (y, x), got shape {cmap.shape}")
    ids = [int(c) for c in class_ids]
    alloc = _allocation_list(allocation, ids)
    flat = cmap.reshape(-1)
    inside = _frame_mask(within, cmap.shape)
    name = frame or ("map" if inside is None else "test_blocks")
    mapped = (flat != nodata) & (flat != 0)
    unknown = sorted(set(np.unique(flat[mapped]).tolist()) - set(ids))
    if unknown:
        raise AccuracyError(f"the map holds class ids {unknown} not in the class table (ids {ids})")
    rng = np.random.default_rng(seed)
    rows, cols, strata, counts, frame_counts = [], [], [], [], []
    for cid, n in zip(ids, alloc):
        in_stratum = flat == cid
        idx = np.flatnonzero(in_stratum if inside is None else in_stratum & inside)
        counts.append(int(np.count_nonzero(in_stratum)))
        frame_counts.append(int(idx.size))
        r, c = np.divmod(_choose(rng, idx, n, cid, frame=None if inside is None else name), cmap.shape[1])
        rows.append(r)
        cols.append(c)
        strata.append(np.full(n, cid, dtype=np.int64))
    log.info("drew %d sample units over %d strata (frame: %s, %d pixels)", sum(alloc), len(ids), name,
             sum(frame_counts))
    return StratifiedSample(
        rows=np.concatenate(rows).astype(np.int64),
        cols=np.concatenate(cols).astype(np.int64),
        stratum=np.concatenate(strata),
        class_ids=tuple(ids),
        mapped_area_pixels=tuple(counts),
        seed=seed,
        frame=name,
        frame_area_pixels=tuple(frame_counts),
    )


def stratum_pixels(class_map: np.ndarray, class_ids: Sequence[int], *,
                   within: np.ndarray | None = None) -> np.ndarray:
    """Pixels of every class of ``class_ids`` in ``class_map`` ((y, x) integer ids), counted only
    where ``within`` ((y, x) bool) is True when given. int64 (k,)."""
    cmap = np.asarray(class_map)
    inside = _frame_mask(within, cmap.shape)
    flat = cmap.reshape(-1) if inside is None else cmap.reshape(-1)[inside]
    return np.array([np.count_nonzero(flat == int(c)) for c in class_ids], dtype=np.int64)


def draw_stratified_sample(
    class_map: np.ndarray,
    *,
    class_ids: Sequence[int],
    seed: int,
    expected_users_accuracy: float | Sequence[float] = 0.85,
    target_se: float = 0.01,
    sample_size: int | None = None,
    min_per_stratum: int = 50,
    within: np.ndarray | None = None,
    frame: str | None = None,
    nodata: int = 0,
) -> StratifiedSample:
    """Size (eq. 13, or ``sample_size``), allocate and draw a stratified random sample of the map.

    ``class_map``: (y, x) integer class ids, 0/``nodata`` = not mapped. The size and the
    proportional shares come from the whole map's mapped areas, the caps from the pixels inside
    ``within`` ((y, x) bool frame mask, None = the whole map); every stratum with a frame pixel
    gets at least ``min_per_stratum`` units or all its frame pixels (:func:`allocate_sample`).
    """
    mapped = stratum_pixels(class_map, class_ids)
    if mapped.sum() == 0:
        raise AccuracyError("the map has no mapped pixel of any class in the class table; predict again")
    in_frame = mapped if within is None else stratum_pixels(class_map, class_ids, within=within)
    users = np.broadcast_to(np.asarray(expected_users_accuracy, dtype=np.float64), mapped.shape)
    n = sample_size or sample_size_for_overall_accuracy(mapped, users, target_se=target_se)
    allocation = allocate_sample(n, mapped, min_per_stratum=min_per_stratum, frame_pixels=in_frame)
    return stratified_sample(class_map, allocation, class_ids=class_ids, nodata=nodata, seed=seed,
                             within=within, frame=frame)
