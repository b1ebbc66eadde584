"""Map accuracy from reference and mapped class ids: confusion matrix, OA, kappa, F1, Q/A.

Pure functions, no I/O. Class ids follow the class table (:class:`ClassTable`); 0 is
"unlabelled" in reference rasters and "nodata" in classified maps, and pixels that are 0 (or
``nodata``) in *either* array are ignored. Confusion matrices here have rows = reference,
columns = map, in class-table order (the ``accuracy.json`` contract).

These are *sample* statistics of the compared pixels. They estimate the map's accuracy only
when those pixels are a probability sample; for area-weighted population estimates from a
stratified sample use :mod:`pipeline.accuracy.area`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, precision_recall_fscore_support

from pipeline.errors import AccuracyError
from pipeline.reference.classes import ClassTable


def _as_ids(values: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer ids (int64) and a mask of usable entries (NaN in float input is unusable)."""
    arr = np.asarray(values)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise AccuracyError(f"{what} has dtype {arr.dtype}; pass integer class ids (uint8, 0 = nodata)")
    if np.issubdtype(arr.dtype, np.floating):
        ok = np.isfinite(arr)
        if np.any(arr[ok] != np.round(arr[ok])):
            raise AccuracyError(f"{what} holds non-integer values; pass integer class ids")
        return np.where(ok, arr, 0).astype(np.int64), ok
    return arr.astype(np.int64, copy=False), np.ones(arr.shape, dtype=bool)


def confusion(
    reference: np.ndarray,
    mapped: np.ndarray,
    class_ids: Sequence[int],
    *,
    nodata: int = 0,
) -> np.ndarray:
    """Confusion matrix of counts, rows = reference, columns = map, in ``class_ids`` order.

    ``reference`` and ``mapped``: class ids of the same shape (any dims, e.g. (y, x) or
    (time, y, x)), integer (float allowed, NaN = nodata); 0 and ``nodata`` are ignored in
    both. Returns int64 of shape (k, k). Raises :class:`AccuracyError` on a shape mismatch or
    ids not in ``class_ids`` (naming them).
    """
    ref, ref_ok = _as_ids(reference, "reference")
    mp, mp_ok = _as_ids(mapped, "mapped")
    if ref.shape != mp.shape:
        raise AccuracyError(
            f"reference {ref.shape} and map {mp.shape} differ in shape; bring both onto the same grid"
        )
    ids = np.asarray(list(class_ids), dtype=np.int64)
    if ids.size == 0 or np.unique(ids).size != ids.size:
        raise AccuracyError(f"class_ids {ids.tolist()} must be non-empty and unique")
    keep = ref_ok & mp_ok & (ref != 0) & (mp != 0) & (ref != nodata) & (mp != nodata)
    r, m = ref[keep], mp[keep]
    order = np.argsort(ids)
    sorted_ids = ids[order]
    k = ids.size
    pos = []
    for vals, what in ((r, "reference"), (m, "map")):
        at = np.clip(np.searchsorted(sorted_ids, vals), 0, k - 1)
        bad = sorted_ids[at] != vals
        if bad.any():
            unknown = sorted(int(v) for v in np.unique(vals[bad]))
            raise AccuracyError(
                f"the {what} holds class ids {unknown[:20]} that are not in the class table "
                f"(ids {ids.tolist()}); recode them or add them to the classes config"
            )
        pos.append(order[at])
    return np.bincount(pos[0] * k + pos[1], minlength=k * k).reshape(k, k).astype(np.int64)


def disagreement(matrix: np.ndarray) -> tuple[float, float]:
    """Quantity and allocation disagreement (Pontius & Millones 2011) of a square matrix.

    ``matrix``: counts or proportions (normalised here), either orientation (the measures are
    symmetric). Returns ``(Q, A)`` with ``Q + A = 1 - overall agreement``.
    """
    p = np.asarray(matrix, dtype=np.float64)
    total = p.sum()
    if total <= 0:
        raise AccuracyError("the matrix is empty; no pixel to compare")
    p = p / total
    diag = np.diag(p)
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    q = 0.5 * float(np.abs(rows - cols).sum())
    a = float(np.minimum(rows - diag, cols - diag).sum())  # sum of 2 min(..) / 2
    return q, a


def _num(v: float) -> float | None:
    """A plain float, or None (JSON null) where the value is undefined (NaN)."""
    v = float(v)
    return None if math.isnan(v) else v


def report_from_confusion(cm: np.ndarray, class_table: ClassTable) -> dict[str, Any]:
    """The accuracy report (see :func:`accuracy_report`) of a confusion matrix.

    ``cm``: int counts (k, k), rows = reference, columns = map, class-table order.
    """
    cm = np.asarray(cm, dtype=np.int64)
    ids = np.asarray(class_table.ids(), dtype=np.int64)
    k = ids.size
    if cm.shape != (k, k):
        raise AccuracyError(f"confusion matrix shape {cm.shape} does not match the {k} classes of the table")
    total = int(cm.sum())
    if total == 0:
        raise AccuracyError(
            "no pixel is labelled in both the reference and the map; check that they cover the "
            "same area and dates"
        )
    # sklearn on the k*k (reference, map) pairs weighted by their counts: exact, any map size
    y_true, y_pred, weight = np.repeat(ids, k), np.tile(ids, k), cm.reshape(-1)
    nz = weight > 0
    y_true, y_pred, weight = y_true[nz], y_pred[nz], weight[nz]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # undefined values become None
        oa = accuracy_score(y_true, y_pred, sample_weight=weight)
        kappa = cohen_kappa_score(y_true, y_pred, labels=ids, sample_weight=weight)
        f1w = f1_score(y_true, y_pred, labels=ids, average="weighted", sample_weight=weight, zero_division=0.0)
        prec, rec, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=ids, sample_weight=weight, zero_division=np.nan
        )
    support = cm.sum(axis=1)
    q, a = disagreement(cm)
    names = class_table.names()
    return {
        "overall_accuracy": float(oa),
        "kappa": _num(kappa),
        "f1_weighted": float(f1w),
        "per_class": {
            name: {
                "precision": _num(prec[i]),
                "recall": _num(rec[i]),
                "f1": _num(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_proportions": (cm / total).tolist(),
        "classes": list(names),
        "quantity_disagreement": q,
        "allocation_disagreement": a,
    }


def accuracy_report(
    reference: np.ndarray,
    mapped: np.ndarray,
    class_table: ClassTable,
    *,
    nodata: int = 0,
) -> dict[str, Any]:
    """Accuracy of ``mapped`` against ``reference`` as a JSON-serialisable dict.

    ``reference``, ``mapped``: class ids, same shape (any dims), integer, 0 / ``nodata`` =
    ignored (see :func:`confusion`). Keys: ``overall_accuracy``, ``kappa`` (Cohen),
    ``f1_weighted`` (F1 averaged with the reference support as weights), ``per_class`` (name ->
    ``precision`` (user's accuracy), ``recall`` (producer's accuracy), ``f1``, ``support`` =
    reference pixels), ``confusion_matrix`` (counts, rows = reference, columns = map,
    class-table order), ``confusion_matrix_proportions``, ``classes`` (names),
    ``quantity_disagreement`` and ``allocation_disagreement`` (Pontius & Millones 2011, their
    sum is ``1 - overall_accuracy``). Undefined values (a class never mapped has no precision;
    kappa with one class) are ``None``.
    """
    cm = confusion(reference, mapped, class_table.ids(), nodata=nodata)
    return report_from_confusion(cm, class_table)
