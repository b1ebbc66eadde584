"""Validation metrics of the training loop (the evaluate stage does the full assessment)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(K, K) int64 counts, rows = reference, columns = prediction, over ``target >= 0``.

    ``pred``/``target``: int tensors of the same shape (class indices; target -1 = ignore).
    """
    keep = target >= 0
    idx = target[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def overall_accuracy(cm: np.ndarray) -> float:
    """Share of correctly classified reference pixels; NaN when ``cm`` is empty."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def f1_weighted(cm: np.ndarray) -> float:
    """Support-weighted mean of per-class F1 (sklearn's ``average='weighted'``)."""
    cm = cm.astype(np.float64)
    support = cm.sum(axis=1)
    if support.sum() == 0:
        return float("nan")
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float((f1 * support).sum() / support.sum())
