"""The validation blocks of a training run, drawn inside the training region of the test design.

Validation (early stopping, model selection) takes a small, stratified share of the training
blocks; the rest stays for training. Training patches may overlap validation, buffer and test
pixels: those pixels are masked out of the loss (label -1), the patch is kept, so a small AOI
does not lose most of its training windows to the split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.split.blocks import block_class_counts, block_index, draw_blocks, n_blocks, near
from pipeline.split.design import BUFFER, REGION_NAMES, TEST, TRAIN, class_region_counts

VAL = 3  # validation pixels of a training run (never a value of the stored design)
RUN_REGION_NAMES = {TRAIN: REGION_NAMES[TRAIN], VAL: "validation", TEST: REGION_NAMES[TEST],
                    BUFFER: REGION_NAMES[BUFFER]}  # in the order the logs and cards list them


def validation_region(region: np.ndarray, labels: np.ndarray, *, block: int, share: float, buffer: int,
                      seed: int) -> np.ndarray:
    """``region`` (H, W) uint8 (TRAIN / TEST / BUFFER) with validation blocks drawn among its
    TRAIN pixels: VAL inside them, BUFFER within ``buffer`` px of them (TRAIN pixels only).

    ``labels``: (T, H, W) int class indices, negative = unlabelled. About ``share`` of the
    blocks holding training labels are drawn, stratified by class (:func:`draw_blocks`); no
    validation when ``share`` is 0 or fewer than two blocks hold training labels.
    """
    out = region.copy()
    if share <= 0:
        return out
    candidates = np.where((region == TRAIN)[None], labels, -1)
    blocks = block_index(region.shape, block)
    n_classes = int(labels.max(initial=-1)) + 1
    counts = block_class_counts(candidates, blocks, max(n_classes, 1), n_blocks(region.shape, block))
    chosen = draw_blocks(counts, share, seed=seed)
    val = np.isin(blocks, chosen) & (region == TRAIN)
    out[near(val, buffer) & (out == TRAIN)] = BUFFER
    out[val] = VAL
    return out


def region_class_counts(labels: np.ndarray, region: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, int]]:
    """Labelled pixel-dates per class name and run region (train / validation / test / buffer).

    ``labels``: (T, H, W) int class indices, negative = unlabelled; ``region``: (H, W)."""
    return class_region_counts(labels, region, names, RUN_REGION_NAMES)


__all__ = ["BUFFER", "TEST", "TRAIN", "VAL", "region_class_counts", "validation_region"]
