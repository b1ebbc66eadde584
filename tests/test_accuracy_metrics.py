"""Accuracy metrics of the compared pixels, checked against independent computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from pipeline.accuracy.metrics import accuracy_report, confusion, disagreement
from pipeline.errors import AccuracyError
from pipeline.reference.classes import ClassTable

TABLE = ClassTable.from_config(
    [
        {"id": 4, "name": "water", "color": "#2166ac"},  # class-table order is not id order
        {"id": 1, "name": "cultivated", "color": "#e6c34a"},
        {"id": 2, "name": "forest", "color": "#1b7837"},
        {"id": 3, "name": "construction", "color": "#d6604d"},
    ]
)
KEYS = {
    "overall_accuracy", "kappa", "f1_weighted", "per_class", "confusion_matrix",
    "confusion_matrix_proportions", "classes", "quantity_disagreement", "allocation_disagreement",
}


def random_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Reference (time, y, x) and a map agreeing ~75 % of the time, with nodata in both."""
    rng = np.random.default_rng(seed)
    ref = rng.choice(np.array([1, 2, 3, 4], np.uint8), size=(3, 30, 40), p=[0.5, 0.3, 0.15, 0.05])
    noise = rng.choice(np.array([1, 2, 3, 4], np.uint8), size=ref.shape)
    mapped = np.where(rng.random(ref.shape) < 0.75, ref, noise).astype(np.uint8)
    ref[rng.random(ref.shape) < 0.2] = 0  # unlabelled reference
    mapped[:, :3, :] = 0  # map nodata
    return ref, mapped


def hand_confusion(ref: np.ndarray, mapped: np.ndarray, ids: list[int]) -> np.ndarray:
    cm = np.zeros((len(ids), len(ids)), dtype=np.int64)
    for r, m in zip(ref.ravel().tolist(), mapped.ravel().tolist()):
        if r and m:
            cm[ids.index(r), ids.index(m)] += 1
    return cm


def test_confusion_matches_hand_count_and_ignores_nodata() -> None:
    ref, mapped = random_pair()
    ids = TABLE.ids()
    cm = confusion(ref, mapped, ids)
    np.testing.assert_array_equal(cm, hand_confusion(ref, mapped, ids))
    assert cm.sum() == np.count_nonzero((ref > 0) & (mapped > 0))
    # changing pixels that are nodata in the map changes nothing
    ref2 = ref.copy()
    ref2[:, :3, :] = 3
    np.testing.assert_array_equal(confusion(ref2, mapped, ids), cm)
    # a custom nodata value (255) is ignored like 0
    m255 = np.where(mapped == 0, 255, mapped).astype(np.uint8)
    np.testing.assert_array_equal(confusion(ref, m255, ids, nodata=255), cm)
    # float input with NaN as nodata
    np.testing.assert_array_equal(confusion(ref, np.where(mapped == 0, np.nan, mapped), ids), cm)


def test_report_against_independent_computation() -> None:
    ref, mapped = random_pair(1)
    rep = accuracy_report(ref, mapped, TABLE)
    assert set(rep) == KEYS
    ids = TABLE.ids()
    cm = hand_confusion(ref, mapped, ids).astype(float)
    n = cm.sum()
    tp, rows, cols = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)  # rows = reference
    oa = tp.sum() / n
    pe = (rows * cols).sum() / n**2
    precision, recall = tp / cols, tp / rows
    f1 = 2 * precision * recall / (precision + recall)
    assert rep["overall_accuracy"] == pytest.approx(oa, abs=1e-12)
    assert rep["kappa"] == pytest.approx((oa - pe) / (1 - pe), abs=1e-12)
    keep = (ref > 0) & (mapped > 0)
    assert rep["kappa"] == pytest.approx(cohen_kappa_score(ref[keep], mapped[keep]), abs=1e-12)
    assert rep["f1_weighted"] == pytest.approx((f1 * rows).sum() / n, abs=1e-12)
    assert rep["classes"] == ["water", "cultivated", "forest", "construction"]
    for i, name in enumerate(rep["classes"]):
        pc = rep["per_class"][name]
        assert pc["precision"] == pytest.approx(precision[i], abs=1e-12)
        assert pc["recall"] == pytest.approx(recall[i], abs=1e-12)
        assert pc["f1"] == pytest.approx(f1[i], abs=1e-12)
        assert pc["support"] == int(rows[i])
    assert rep["confusion_matrix"] == cm.astype(int).tolist()
    np.testing.assert_allclose(rep["confusion_matrix_proportions"], cm / n)
    q = 0.5 * np.abs(rows / n - cols / n).sum()
    assert rep["quantity_disagreement"] == pytest.approx(q, abs=1e-12)
    assert rep["quantity_disagreement"] + rep["allocation_disagreement"] == pytest.approx(1 - oa, abs=1e-12)
    json.loads(json.dumps(rep, allow_nan=False))  # plain JSON


def test_disagreement_known_cases() -> None:
    # ref [1, 1, 1, 2] vs map [1, 2, 2, 2]: all errors are quantity
    q, a = disagreement(confusion(np.array([1, 1, 1, 2]), np.array([1, 2, 2, 2]), [1, 2]))
    assert (q, a) == pytest.approx((0.5, 0.0))
    # swapped pixels: all errors are allocation
    q, a = disagreement(confusion(np.array([1, 2]), np.array([2, 1]), [1, 2]))
    assert (q, a) == pytest.approx((0.0, 1.0))
    # a 3-class case by hand: rows ref totals .5/.3/.2, map totals .4/.4/.2, diagonal .3/.2/.1
    p = np.array([[0.3, 0.15, 0.05], [0.05, 0.2, 0.05], [0.05, 0.05, 0.1]])
    q, a = disagreement(p)
    assert q == pytest.approx(0.5 * (0.1 + 0.1 + 0.0))
    assert a == pytest.approx(min(0.2, 0.1) + min(0.1, 0.2) + min(0.1, 0.1))


def test_undefined_values_are_null_and_perfect_map() -> None:
    ref = np.array([1, 1, 2, 2, 3])
    mapped = np.array([1, 1, 2, 2, 2])  # construction (3) is never mapped, water absent
    rep = accuracy_report(ref, mapped, TABLE)
    assert rep["per_class"]["construction"]["precision"] is None
    assert rep["per_class"]["construction"]["recall"] == 0.0
    assert rep["per_class"]["water"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert rep["overall_accuracy"] == pytest.approx(0.8)
    one = accuracy_report(np.array([1, 1]), np.array([1, 1]), TABLE)
    assert one["overall_accuracy"] == 1.0 and one["quantity_disagreement"] == 0.0
    assert one["kappa"] is None  # chance agreement is 1: kappa undefined
    json.loads(json.dumps(one, allow_nan=False))


def test_bad_inputs() -> None:
    with pytest.raises(AccuracyError, match=r"map holds class ids \[7\]"):
        confusion(np.array([1, 2]), np.array([1, 7]), TABLE.ids())
    with pytest.raises(AccuracyError, match="differ in shape"):
        confusion(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8), TABLE.ids())
    with pytest.raises(AccuracyError, match="no pixel is labelled"):
        accuracy_report(np.array([0, 1]), np.array([2, 0]), TABLE)
