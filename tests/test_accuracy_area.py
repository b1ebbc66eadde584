"""Olofsson et al. (2014) estimators, sample design and sampler.

The worked example (section 5, Table 8 of the paper) and its published results are written
here; they are the ones listed in ../shared/reference/olofsson2014-worked-example.md.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipeline.accuracy.area import (
    area_adjusted_accuracy,
    area_adjusted_from_sample,
    require_probability_design,
    sample_error_matrix,
)
from pipeline.accuracy.sampling import allocate_sample, sample_size_for_overall_accuracy, stratified_sample
from pipeline.errors import AccuracyError
from pipeline.reference.classes import ClassTable

NAMES = ["deforestation", "forest gain", "stable forest", "stable non-forest"]
COUNTS = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])  # rows map
MAPPED = np.array([200_000, 150_000, 3_200_000, 6_450_000])
PUBLISHED = {
    "weights": [0.020, 0.015, 0.320, 0.645],
    "oa": 0.947,
    "oa_ci": 0.018,
    "users": [0.88, 0.73, 0.93, 0.96],
    "producers": [0.75, 0.85, 0.93, 0.96],
    "area": [235_086, 129_846, 3_175_221, 6_459_846],
    "area_ci": [68_418, 41_731, 172_332, 180_907],
}


@pytest.fixture(scope="module")
def est():  # noqa: ANN201
    return area_adjusted_accuracy(COUNTS, MAPPED, design="stratified_random", class_names=NAMES, pixel_area_ha=0.09)


def test_worked_example_reproduces_published_results(est) -> None:  # noqa: ANN001
    np.testing.assert_allclose(est.weights, PUBLISHED["weights"], atol=5e-4)
    assert round(est.overall_accuracy, 3) == PUBLISHED["oa"]
    assert round(est.overall_accuracy_ci95, 3) == PUBLISHED["oa_ci"]
    assert [round(v, 2) for v in est.users_accuracy] == PUBLISHED["users"]
    assert [round(v, 2) for v in est.producers_accuracy] == PUBLISHED["producers"]
    assert [round(v) for v in est.area_pixels] == PUBLISHED["area"]
    assert [round(v) for v in est.area_pixels_ci95] == PUBLISHED["area_ci"]
    d = est.to_dict()
    assert round(d["area_ha"]["deforestation"]) == 21_158
    assert round(d["area_ha_ci95"]["deforestation"]) == 6_158
    assert est.area_pixels.sum() == pytest.approx(MAPPED.sum())
    json.loads(json.dumps(d, allow_nan=False))


def test_population_matrix_and_disagreement(est) -> None:  # noqa: ANN001
    p = est.error_matrix
    assert p[0, 0] == pytest.approx(0.02 * 66 / 75)
    assert p[3, 0] == pytest.approx(0.645 * 2 / 325)
    np.testing.assert_allclose(p.sum(axis=1), MAPPED / MAPPED.sum())
    q = 0.5 * np.abs(p.sum(axis=0) - p.sum(axis=1)).sum()
    assert est.quantity_disagreement == pytest.approx(q)
    assert est.quantity_disagreement + est.allocation_disagreement == pytest.approx(1 - est.overall_accuracy)


def unit_level_stratified_se(counts: np.ndarray, mapped: np.ndarray) -> dict[str, np.ndarray]:
    """Standard errors from sample units, with the generic stratified (ratio) estimator
    (Stehman 2014; no finite population correction) - independent of eq. 5/6/7/10."""
    k = counts.shape[0]
    strata = [np.repeat(np.arange(k), counts[h]) for h in range(k)]  # reference class of each unit
    n_total = mapped.sum()

    def total_and_var(unit_values: list[np.ndarray]) -> tuple[float, float]:
        tot = sum(mapped[h] * v.mean() for h, v in enumerate(unit_values))
        var = sum(mapped[h] ** 2 * v.var(ddof=1) / v.size for h, v in enumerate(unit_values))
        return tot, var

    oa_t, oa_v = total_and_var([(r == h).astype(float) for h, r in enumerate(strata)])
    area_se, prod, prod_se = [], [], []
    for j in range(k):
        x_t, x_v = total_and_var([(r == j).astype(float) for r in strata])  # pixels of class j
        area_se.append(math.sqrt(x_v))
        y_t, _ = total_and_var([((r == j) & (h == j)).astype(float) for h, r in enumerate(strata)])
        ratio = y_t / x_t
        _, z_v = total_and_var([((r == j) & (h == j)) - ratio * (r == j) for h, r in enumerate(strata)])
        prod.append(ratio)
        prod_se.append(math.sqrt(z_v) / x_t)
    return {
        "oa": np.array(oa_t / n_total),
        "oa_se": np.array(math.sqrt(oa_v) / n_total),
        "area_se": np.array(area_se),
        "producers": np.array(prod),
        "producers_se": np.array(prod_se),
    }


def test_standard_errors_match_unit_level_estimator(est) -> None:  # noqa: ANN001
    ref = unit_level_stratified_se(COUNTS, MAPPED)
    assert est.overall_accuracy == pytest.approx(float(ref["oa"]))
    assert est.overall_accuracy_se == pytest.approx(float(ref["oa_se"]))
    np.testing.assert_allclose(est.area_pixels_se, ref["area_se"], rtol=1e-10)
    np.testing.assert_allclose(est.producers_accuracy, ref["producers"], rtol=1e-10)
    np.testing.assert_allclose(est.producers_accuracy_se, ref["producers_se"], rtol=1e-10)
    u = COUNTS.diagonal() / COUNTS.sum(axis=1)
    np.testing.assert_allclose(est.users_accuracy_se, np.sqrt(u * (1 - u) / (COUNTS.sum(axis=1) - 1)))


@pytest.mark.parametrize("design", ["training_split", "validation_split", "convenience", "Stratified"])
def test_refuses_non_probability_designs(design: str) -> None:
    with pytest.raises(AccuracyError, match="not a probability sample"):
        area_adjusted_accuracy(COUNTS, MAPPED, design=design)
    with pytest.raises(AccuracyError, match="stratified random sample"):
        require_probability_design(design)


def test_estimator_input_errors() -> None:
    one = COUNTS.copy()
    one[1] = [0, 1, 0, 0]
    with pytest.raises(AccuracyError, match="'forest gain' has 1 sample unit"):
        area_adjusted_accuracy(one, MAPPED, design="stratified_random", class_names=NAMES)
    with pytest.raises(AccuracyError, match="disagree"):
        area_adjusted_accuracy(COUNTS, MAPPED[:3], design="stratified_random")


def test_sample_size_eq13_and_allocation() -> None:
    users = [0.7, 0.6, 0.9, 0.95]
    w = MAPPED / MAPPED.sum()
    by_hand = (sum(wi * math.sqrt(u * (1 - u)) for wi, u in zip(w, users)) / 0.01) ** 2
    n = sample_size_for_overall_accuracy(MAPPED, users, target_se=0.01)
    assert n == math.ceil(by_hand) == 641
    alloc = allocate_sample(n, MAPPED, min_per_stratum=75)
    assert alloc.sum() == n and alloc[0] == 75 and alloc[1] == 75
    # the rest proportional to area: 491 * 0.32 / 0.965 = 162.8, 491 * 0.645 / 0.965 = 328.2
    assert alloc[2:].tolist() == [163, 328]
    # tiny strata are capped at their pixel count, empty strata get nothing
    assert allocate_sample(1000, [5, 10, 100_000, 0], min_per_stratum=50).tolist() == [5, 10, 985, 0]
    with pytest.raises(AccuracyError, match="min_per_stratum"):
        allocate_sample(100, MAPPED, min_per_stratum=50)


def test_stratified_sample_draws_without_replacement() -> None:
    rng = np.random.default_rng(0)
    cmap = rng.choice(np.array([0, 1, 2, 3], np.uint8), size=(60, 50), p=[0.1, 0.6, 0.25, 0.05])
    ids = [1, 2, 3]
    s = stratified_sample(cmap, {1: 40, 2: 30, 3: 20}, class_ids=ids, seed=3)
    assert s.design == "stratified_random"
    assert s.mapped_area_pixels == tuple(int((cmap == c).sum()) for c in ids)
    np.testing.assert_array_equal(cmap[s.rows, s.cols], s.stratum)  # each unit lies in its stratum
    assert [int((s.stratum == c).sum()) for c in ids] == [40, 30, 20]
    flat = s.rows * cmap.shape[1] + s.cols
    assert np.unique(flat).size == flat.size  # without replacement
    assert not (cmap[s.rows, s.cols] == 0).any()  # nodata excluded
    again = stratified_sample(cmap, [40, 30, 20], class_ids=ids, seed=3)
    np.testing.assert_array_equal(again.rows, s.rows)
    other = stratified_sample(cmap, [40, 30, 20], class_ids=ids, seed=4)
    assert not np.array_equal(other.rows, s.rows)
    full = int((cmap == 3).sum())
    with pytest.raises(AccuracyError, match=f"stratum 3 has {full} mapped pixels"):
        stratified_sample(cmap, [1, 1, full + 1], class_ids=ids, seed=0)


def test_sample_to_estimate_end_to_end() -> None:
    # a perfect reference gives OA 1 and areas equal to the mapped areas
    rng = np.random.default_rng(1)
    cmap = rng.choice(np.array([1, 2, 3], np.uint8), size=(40, 40), p=[0.6, 0.3, 0.1])
    s = stratified_sample(cmap, [20, 20, 20], class_ids=[1, 2, 3], seed=0)
    counts = sample_error_matrix(s.stratum, cmap[s.rows, s.cols], s.class_ids)
    np.testing.assert_array_equal(counts, np.diag([20, 20, 20]))
    table = ClassTable.from_config([{"id": i, "name": f"c{i}", "color": "#000000"} for i in (1, 2, 3)])
    est = area_adjusted_from_sample(s, cmap[s.rows, s.cols], table)
    assert est.overall_accuracy == pytest.approx(1.0) and est.overall_accuracy_se == 0.0
    np.testing.assert_allclose(est.area_pixels, s.mapped_area_pixels)
    assert est.classes == ("c1", "c2", "c3")
    # a reference that calls every class-3 unit class 1: class 1 area grows by class 3's
    ref = np.where(s.stratum == 3, 1, cmap[s.rows, s.cols])
    ref[0] = 0  # one unit could not be interpreted: left out
    est = area_adjusted_from_sample(s, ref, table)
    mapped = np.array(s.mapped_area_pixels, float)
    np.testing.assert_allclose(est.area_pixels, [mapped[0] + mapped[2], mapped[1], 0.0])
    assert est.sample_size == 59 and est.overall_accuracy == pytest.approx(1 - mapped[2] / mapped.sum())


def test_a_stratum_sampled_in_full_adds_no_variance() -> None:
    """A class mapped at a single pixel gets one sample unit: that stratum is a census, known
    exactly, so it adds nothing to the variances (its users' accuracy has SE 0) instead of
    stopping the evaluation. Checked against the estimators written out by hand for the other
    strata (Olofsson et al. 2014 eqs. 1, 5, 6)."""
    counts = np.array([[40, 2, 0], [3, 30, 1], [0, 0, 1]])
    area = np.array([1000.0, 500.0, 1.0])
    est = area_adjusted_accuracy(counts, area, design="stratified_random")
    w = area / area.sum()
    n_i = counts.sum(axis=1)
    users = np.diag(counts) / n_i
    assert est.overall_accuracy == pytest.approx(float(np.sum(w * users)))
    var_oa = sum(w[i] ** 2 * users[i] * (1 - users[i]) / (n_i[i] - 1) for i in (0, 1))  # stratum 3: census
    assert est.overall_accuracy_se == pytest.approx(math.sqrt(var_oa))
    assert est.users_accuracy_se[2] == 0.0
    assert est.users_accuracy_se[1] == pytest.approx(math.sqrt(users[1] * (1 - users[1]) / (n_i[1] - 1)))
    # one unit out of two mapped pixels is not a census: still refused, naming the stratum
    with pytest.raises(AccuracyError, match="class_3.*1 sample unit"):
        area_adjusted_accuracy(counts, np.array([1000.0, 500.0, 2.0]), design="stratified_random")
