"""Square spatial blocks of a grid, and stratified draws of blocks (test, validation, CV folds).

Pure numpy. A block grid cuts an (H, W) pixel grid into squares of ``block`` pixels from the
top-left corner (the last row/column of blocks may be smaller). Draws choose whole blocks,
stratified on the labelled pixels each block holds per class, so that:

- every class present in at least two blocks is present in the drawn set when possible,
- every class keeps pixels outside the drawn set (training keeps every class),
- each class's share of pixels in the drawn set is close to the target share.

Roberts et al. 2017 (Ecography) on blocking against spatial autocorrelation; Meyer & Pebesma
2022 on map accuracy: pixels of one field are never split between training and test.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

# candidate draws scored per call: enough to find a stratified draw for a few hundred blocks
_CANDIDATES = 400


def block_index(shape: tuple[int, int], block: int) -> np.ndarray:
    """Block id of every pixel, (H, W) int64, row-major over the block grid."""
    h, w = shape
    nbx = math.ceil(w / block)
    return (np.arange(h)[:, None] // block) * nbx + np.arange(w)[None, :] // block


def n_blocks(shape: tuple[int, int], block: int) -> int:
    """Number of blocks of the block grid of ``shape``."""
    return math.ceil(shape[0] / block) * math.ceil(shape[1] / block)


def block_class_counts(labels: np.ndarray, blocks: np.ndarray, n_classes: int, n_block: int) -> np.ndarray:
    """Labelled pixel(-date) counts per block and class, (n_block, n_classes) int64.

    ``labels``: (..., H, W) int class indices 0..n_classes-1, negative = unlabelled (leading
    dims, e.g. time, are summed); ``blocks``: (H, W) int64 from :func:`block_index`.
    """
    lab = np.asarray(labels).reshape(-1, *blocks.shape)
    out = np.zeros((n_block, n_classes), dtype=np.int64)
    for layer in lab:
        ok = layer >= 0
        np.add.at(out, (blocks[ok], layer[ok].astype(np.int64)), 1)
    return out


def _score(chosen: np.ndarray, counts: np.ndarray, share: float) -> float:
    """Lower is better: classes lost to training, classes missing from the draw, share error."""
    total = counts.sum(0)
    drawn = counts[chosen].sum(0)
    live = total > 0
    lost = int(np.sum(live & (drawn == total)))  # a class with no pixel left outside the draw
    spread = (counts[:, live] > 0).sum(0) >= 2  # classes that can be on both sides
    missing = int(np.sum(spread & (drawn[live] == 0)))
    error = float(np.abs(drawn[live] / total[live] - share).mean()) if live.any() else 0.0
    return 1000.0 * lost + 10.0 * missing + error


def draw_blocks(counts: np.ndarray, share: float, *, seed: int, candidates: int = _CANDIDATES) -> np.ndarray:
    """Stratified random draw of about ``share`` of the labelled blocks (see module doc).

    ``counts``: (n_block, K) labelled pixels per block and class. The number drawn is
    ``round(share * n_labelled)``, at least 1 and at most ``n_labelled - 1``. Among
    ``candidates`` seeded random draws of that size, the one with the best stratification score
    is kept. Returns the chosen block ids, sorted int64 (empty when fewer than 2 blocks hold labels).
    """
    labelled = np.flatnonzero(counts.sum(1) > 0)
    if labelled.size < 2 or share <= 0:
        return np.zeros(0, dtype=np.int64)
    k = min(max(1, round(share * labelled.size)), labelled.size - 1)
    rng = np.random.default_rng(seed)
    best, best_score = None, math.inf
    for _ in range(candidates):
        chosen = rng.choice(labelled, size=k, replace=False)
        score = _score(chosen, counts, share)
        if score < best_score:
            best, best_score = chosen, score
    return np.sort(np.asarray(best, dtype=np.int64))


def assign_folds(counts: np.ndarray, folds: int, *, seed: int) -> np.ndarray:
    """Fold (0..folds-1) of every labelled block, -1 for blocks without labels, (n_block,) int64.

    Stratified greedy assignment: blocks are visited from the ones holding the rarest classes
    (seeded tie-break), each going to the fold whose per-class pixel totals it brings closest to
    an even split among the folds holding the fewest blocks (so fold sizes differ by at most one
block). Every labelled block is in exactly one fold.
    """
    fold = np.full(counts.shape[0], -1, dtype=np.int64)
    labelled = np.flatnonzero(counts.sum(1) > 0)
    if labelled.size == 0:
        return fold
    rng = np.random.default_rng(seed)
    total = counts.sum(0).astype(np.float64)
    rarity = np.where(total > 0, 1.0 / np.maximum(total, 1), 0.0)
    key = (counts[labelled] > 0) @ rarity
    order = labelled[np.lexsort((rng.random(labelled.size), -key))]
    sums = np.zeros((folds, counts.shape[1]), dtype=np.float64)
    sizes = np.zeros(folds, dtype=np.int64)
    target = total / folds
    for b in order:
        trial = sums + counts[b]
        cost = (((trial - target) / np.maximum(target, 1)) ** 2).sum(1) - (((sums - target) / np.maximum(target, 1)) ** 2).sum(1)
        open_folds = np.flatnonzero(sizes == sizes.min())  # folds stay within one block of each other
        f = int(open_folds[np.argmin(cost[open_folds])])
        fold[b] = f
        sums[f] += counts[b]
        sizes[f] += 1
    return fold


def near(mask: np.ndarray, distance: int) -> np.ndarray:
    """Pixels within ``distance`` pixels (Chebyshev) of a True pixel of ``mask`` (H, W) bool,
    the mask itself excluded -> (H, W) bool."""
    if distance <= 0 or not mask.any():
        return np.zeros_like(mask, dtype=bool)
    grown = ndimage.maximum_filter(mask, size=2 * distance + 1, mode="constant", cval=False)
    return grown & ~mask
