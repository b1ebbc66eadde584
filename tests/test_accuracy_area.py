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
    round_to_total,
    sample_error_matrix,
    try_area_adjusted,
    unavailable_estimate,
)
from pipeline.accuracy.sampling import (
    allocate_sample,
    draw_stratified_sample,
    sample_size_for_overall_accuracy,
    stratified_sample,
)
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
    # floors above the eq. 13 total: every mapped stratum still gets its minimum, the total grows
    assert allocate_sample(100, MAPPED, min_per_stratum=50).tolist() == [50, 50, 50, 50]


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


TABLE3 = ClassTable.from_config([{"id": i, "name": n, "color": "#000000"}
                                 for i, n in ((1, "forest"), (2, "crops"), (3, "water"))])


def test_worked_example_in_hectares_and_km2(est) -> None:  # noqa: ANN001
    """ha and km2 are the published pixel areas times 0.09 ha (/ 100 for km2); pixel counts are
    integers that still add up to the 10,000,000 mapped pixels."""
    d = est.to_dict()
    text = json.dumps(d, allow_nan=False)
    for i, name in enumerate(NAMES):
        assert d["area_ha"][name] == pytest.approx(PUBLISHED["area"][i] * 0.09, abs=0.09)
        assert d["area_ha_ci95"][name] == pytest.approx(PUBLISHED["area_ci"][i] * 0.09, abs=0.09)
        assert d["area_km2"][name] == pytest.approx(d["area_ha"][name] / 100)
        assert d["area_km2_ci95"][name] == pytest.approx(d["area_ha_ci95"][name] / 100)
        assert d["mapped_area_ha"][name] == pytest.approx(MAPPED[i] * 0.09)
        # published values are rounded one by one (they sum to 9,999,999); the JSON's are rounded so
        # that they add up to the mapped total: each within one pixel of the published one
        assert abs(d["area_pixels"][name] - PUBLISHED["area"][i]) <= 1
        assert d["area_pixels_ci95"][name] == PUBLISHED["area_ci"][i]
        assert isinstance(d["mapped_area_pixels"][name], int) and isinstance(d["area_pixels"][name], int)
    assert sum(d["area_pixels"].values()) == MAPPED.sum()
    assert '"stable forest": 3200000,' in text and '"deforestation": 235086,' in text  # no decimals
    assert d["total_area_km2"] == pytest.approx(9000.0)
    assert d["frame"] == "map" and d["frame_pixels"] == MAPPED.sum() and d["available"] is True


def test_round_to_total_keeps_the_sum() -> None:
    v = np.array([0.4, 0.4, 0.4, 1.8])  # sum 3.0; plain rounding gives 0 + 0 + 0 + 2 = 2
    out = round_to_total(v)
    assert out.sum() == 3 and out.tolist() == [1, 0, 0, 2]


def test_allocation_gives_a_tiny_class_its_census() -> None:
    # proportional share of a 3-pixel class would be 0: it gets all 3 (a census), the rest stays proportional
    alloc = allocate_sample(400, [100_000, 50_000, 3], min_per_stratum=50)
    assert alloc.tolist()[2] == 3 and alloc.sum() == 400
    assert alloc[:2].tolist() == [round(397 * 2 / 3), round(397 / 3)]
    # floors above the total: 50 + 3 + 1, the total grows past 20
    assert allocate_sample(20, [1000, 3, 1], min_per_stratum=50).tolist() == [50, 3, 1]
    # a total above the pixels there are: every pixel (a census of the map)
    assert allocate_sample(500, [30, 3, 0], min_per_stratum=5).tolist() == [30, 3, 0]


def test_allocation_caps_at_the_frame_counts() -> None:
    # weights from the whole map, caps from the frame: stratum 1 has only 40 frame pixels
    alloc = allocate_sample(641, MAPPED, min_per_stratum=75, frame_pixels=[40, 1_000, 100_000, 0])
    assert alloc[0] == 40 and alloc[1] == 75 and alloc[3] == 0
    assert alloc.sum() == 641
    # stable forest takes the rest (stable non-forest, mapped but not in the frame, gets nothing)
    assert alloc[2] == 641 - 40 - 75
    with pytest.raises(AccuracyError, match="no mapped pixel lies inside the sampling frame"):
        allocate_sample(10, [5, 5], frame_pixels=[0, 0])


def blocks_world() -> tuple[np.ndarray, np.ndarray]:
    """A 60 x 60 map of forest/crops with a 12-pixel water body crossing one test block, and a
    frame of four 15 x 15 test blocks."""
    rng = np.random.default_rng(5)
    cmap = rng.choice(np.array([1, 2], np.uint8), size=(60, 60), p=[0.7, 0.3])
    cmap[10:13, 26:30] = 3  # water: 12 pixels, 6 of them inside the block at cols 15:30
    cmap[0, :] = 0  # a nodata row
    within = np.zeros(cmap.shape, bool)
    for r, c in ((0, 0), (0, 30), (30, 15), (45, 45)):
        within[r:r + 15, c:c + 15] = True
    within[10:13, 15:28] = True  # the block that catches part of the water body
    return cmap, within


def test_frame_restricted_sample_stays_inside_and_respects_frame_counts() -> None:
    cmap, within = blocks_world()
    s = draw_stratified_sample(cmap, class_ids=[1, 2, 3], seed=2, sample_size=80, min_per_stratum=20,
                               within=within)
    assert within[s.rows, s.cols].all()  # never outside the frame
    np.testing.assert_array_equal(cmap[s.rows, s.cols], s.stratum)
    in_frame = [int(((cmap == c) & within).sum()) for c in (1, 2, 3)]
    assert s.frame_area_pixels == tuple(in_frame) and in_frame[2] == 6
    assert s.mapped_area_pixels == tuple(int((cmap == c).sum()) for c in (1, 2, 3))  # weights: whole map
    per_stratum = [int((s.stratum == c).sum()) for c in (1, 2, 3)]
    assert per_stratum[2] == 6  # water: all of its 6 frame pixels, not 20
    assert all(n <= f for n, f in zip(per_stratum, in_frame))
    assert s.frame == "test_blocks" and s.to_dict()["frame_pixels"] == int(((cmap > 0) & within).sum())
    # a perfect reference: areas are the whole map's mapped areas, not the frame's
    d = try_area_adjusted(s, cmap[s.rows, s.cols], TABLE3, pixel_area_ha=0.09)
    assert d["available"] is True and d["frame"] == "test_blocks"
    assert d["area_pixels"] == {"forest": int((cmap == 1).sum()), "crops": int((cmap == 2).sum()), "water": 12}
    assert d["frame_pixels"] == sum(in_frame) and "frame_assumption" in d
    # a frame that contains no water at all: no estimate, with the reason, never drawn outside
    within2 = within.copy()
    within2[cmap == 3] = False
    s2 = draw_stratified_sample(cmap, class_ids=[1, 2, 3], seed=2, sample_size=80, min_per_stratum=20,
                                within=within2)
    assert within2[s2.rows, s2.cols].all() and not (s2.stratum == 3).any()
    d2 = try_area_adjusted(s2, cmap[s2.rows, s2.cols], TABLE3)
    assert d2["available"] is False and "'water'" in d2["reason"] and "frame" in d2["reason"]
    with pytest.raises(AccuracyError, match="bool"):
        stratified_sample(cmap, [1, 1, 1], class_ids=[1, 2, 3], seed=0, within=within[:10])


def test_a_class_mapped_at_one_pixel_still_yields_an_estimate() -> None:
    rng = np.random.default_rng(7)
    cmap = rng.choice(np.array([1, 2], np.uint8), size=(40, 40), p=[0.6, 0.4])
    cmap[5, 5] = 3
    s = draw_stratified_sample(cmap, class_ids=[1, 2, 3], seed=1, target_se=0.05, min_per_stratum=30)
    assert [int((s.stratum == c).sum()) for c in (1, 2, 3)][2] == 1
    ref = cmap[s.rows, s.cols].copy()
    ref[np.flatnonzero(s.stratum == 1)[:6]] = 2  # 6 forest units are crops in the reference
    d = try_area_adjusted(s, ref, TABLE3, pixel_area_ha=0.09)
    assert d["available"] is True and d["users_accuracy_se"]["water"] == 0.0  # census
    # independently: OA = sum_h W_h * (share of stratum h's units that agree)
    mapped = np.array([(cmap == c).sum() for c in (1, 2, 3)], float)
    agree = [np.mean(ref[s.stratum == c] == c) for c in (1, 2, 3)]
    assert d["overall_accuracy"] == pytest.approx(float(np.sum(mapped / mapped.sum() * agree)))


def test_uninterpretable_units_are_counted_and_left_out() -> None:
    rng = np.random.default_rng(3)
    cmap = rng.choice(np.array([1, 2, 3], np.uint8), size=(50, 50), p=[0.5, 0.3, 0.2])
    s = stratified_sample(cmap, [30, 30, 30], class_ids=[1, 2, 3], seed=0)
    ref = cmap[s.rows, s.cols].astype(np.int64)
    ref[[0, 1, 40, 70]] = 0  # 4 units could not be interpreted
    ref[[2, 3]], ref[41] = 2, 3  # and 3 disagree with the map
    d = try_area_adjusted(s, ref, TABLE3)
    assert d["available"] is True and d["uninterpretable_units"] == 4 and d["sample_size"] == 86
    by_hand = area_adjusted_accuracy(np.array([[26, 2, 0], [0, 28, 1], [0, 0, 29]]), s.mapped_area_pixels,
                                     design="stratified_random")
    assert d["overall_accuracy"] == pytest.approx(by_hand.overall_accuracy)
    assert d["users_accuracy_se"]["forest"] == pytest.approx(float(by_hand.users_accuracy_se[0]))
    assert list(d["area_pixels"].values()) == round_to_total(by_hand.area_pixels).tolist()


def test_try_area_adjusted_reports_an_impossible_case() -> None:
    rng = np.random.default_rng(4)
    cmap = rng.choice(np.array([1, 2, 3], np.uint8), size=(50, 50), p=[0.5, 0.3, 0.2])
    s = stratified_sample(cmap, [20, 20, 20], class_ids=[1, 2, 3], seed=0)
    ref = cmap[s.rows, s.cols].astype(np.int64)
    ref[s.stratum == 3] = 0  # no unit of 'water' has a reference label
    with pytest.raises(AccuracyError, match="'water' has 0 sample unit"):
        area_adjusted_from_sample(s, ref, TABLE3)
    d = try_area_adjusted(s, ref, TABLE3, pixel_area_ha=0.09)
    assert d["available"] is False and d["uninterpretable_units"] == 20
    assert "'water'" in d["reason"] and "label" in d["reason"] and d["reason"].endswith(".")
    assert d["reason"].count(". ") == 0  # one sentence
    assert d["frame"] == "map" and d["sample_size"] == 60
    assert unavailable_estimate("no mapped pixel lies inside the frame; widen it", frame="test_blocks") == {
        "available": False, "reason": "No mapped pixel lies inside the frame; widen it.", "frame": "test_blocks",
        "estimator": "Olofsson et al. 2014 stratified estimators"}
    json.loads(json.dumps(d, allow_nan=False))
