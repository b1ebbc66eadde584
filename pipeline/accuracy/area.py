"""Area-adjusted accuracy and error-adjusted area (Olofsson et al. 2014, RSE 148:42-57).

From a stratified random sample whose strata are the map classes: ``sample_counts`` (k, k)
with rows = map class (stratum), columns = reference class, and the mapped area of every
stratum (pixels). With ``W_i = A_i / A`` the mapped area proportions and ``n_i.`` the sample
size of stratum ``i``, the estimated population error matrix is ``p_ij = W_i n_ij / n_i.``
(eq. 4/9), and

- overall accuracy ``O = sum_j p_jj`` (eq. 1) with ``V(O) = sum_i W_i^2 U_i (1 - U_i) / (n_i. - 1)`` (eq. 5),
- user's accuracy ``U_i = p_ii / p_i.`` with ``V(U_i) = U_i (1 - U_i) / (n_i. - 1)`` (eq. 6),
- producer's accuracy ``P_j = p_jj / p_.j`` with variance eq. 7,
- area proportion ``p_.k`` with ``SE(p_.k) = sqrt(sum_i (W_i p_ik - p_ik^2) / (n_i. - 1))``
  (eq. 10), error-adjusted area ``A p_.k`` and ``SE = A SE(p_.k)`` (eq. 11),

95 % confidence intervals being ``+/- 1.96 SE`` (reported as half-widths). Quantity and
allocation disagreement (Pontius & Millones 2011) are computed on the population matrix.

These estimators are valid only for a probability sample (stratified random from the map,
or simple random). Training/validation splits or hand-picked points are not: the functions
refuse them (:class:`AccuracyError`).

A stratum whose every mapped pixel was sampled and interpreted is a census: its proportions are
known exactly and it adds no variance. Sample units without a reference class (0, could not be
interpreted) are left out and counted (``uninterpretable_units``); that assumes they are missing
at random within their stratum. When the units were drawn inside a sampling frame (e.g. the
spatial test blocks, :mod:`pipeline.accuracy.sampling`), ``W_i`` still comes from the whole map,
so the estimates apply the frame's error rates to the whole map; a stratum is a census only when
its whole mapped area (not only its frame pixels) was sampled. Areas are given in pixels and,
with the pixel area, in hectares and km2. :func:`try_area_adjusted` returns a JSON-ready dict
that says why (``available: false``) instead of raising when no estimate can be made.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.accuracy.metrics import disagreement
from pipeline.accuracy.sampling import StratifiedSample
from pipeline.errors import AccuracyError
from pipeline.reference.classes import ClassTable

log = logging.getLogger(__name__)

PROBABILITY_DESIGNS = ("stratified_random", "simple_random")
Z95 = 1.96  # as in Olofsson et al. (2014)
HA_PER_KM2 = 100.0


def require_probability_design(design: str) -> None:
    """Raise :class:`AccuracyError` unless ``design`` names a probability sampling design."""
    if design not in PROBABILITY_DESIGNS:
        raise AccuracyError(
            f"sample design {design!r} is not a probability sample; area-adjusted accuracy and "
            "error-adjusted areas (Olofsson et al. 2014) need one of "
            f"{list(PROBABILITY_DESIGNS)} - draw a stratified random sample from the map "
            "(pipeline.accuracy.sampling.stratified_sample) and label it, instead of reusing "
            "training/validation pixels"
        )


def sample_error_matrix(
    map_classes: np.ndarray,
    reference_classes: np.ndarray,
    class_ids: Sequence[int],
) -> np.ndarray:
    """Sample counts, rows = map class, columns = reference class, in ``class_ids`` order.

    ``map_classes``, ``reference_classes``: 1-D class ids of the sample units (int). Units whose
    reference is 0 (could not be interpreted) are dropped with a warning. Raises
    :class:`AccuracyError` for ids not in ``class_ids`` or a map class of 0.
    """
    m = np.asarray(map_classes, dtype=np.int64).reshape(-1)
    r = np.asarray(reference_classes, dtype=np.int64).reshape(-1)
    if m.shape != r.shape:
        raise AccuracyError(f"{m.size} map classes but {r.size} reference classes; give one per sample unit")
    ids = list(class_ids)
    index = {c: i for i, c in enumerate(ids)}
    if np.any(m == 0):
        raise AccuracyError("sample units with map class 0 (nodata); draw the sample from mapped pixels only")
    dropped = int(np.count_nonzero(r == 0))
    if dropped:
        log.warning("%d sample unit(s) have no reference class (0) and are left out", dropped)
    m, r = m[r != 0], r[r != 0]
    unknown = sorted({int(v) for v in np.concatenate([m, r])} - set(ids))
    if unknown:
        raise AccuracyError(f"sample holds class ids {unknown} not in the class table (ids {ids})")
    out = np.zeros((len(ids), len(ids)), dtype=np.int64)
    rows = np.array([index[v] for v in m.tolist()], dtype=np.int64)
    cols = np.array([index[v] for v in r.tolist()], dtype=np.int64)
    np.add.at(out, (rows, cols), 1)
    return out


def _num(v: float) -> float | None:
    """A finite float, or None (JSON null) where undefined."""
    return None if not np.isfinite(v) else float(v)


def _whole(v: float) -> int | None:
    """A pixel count as an int, or None where undefined."""
    return None if not np.isfinite(v) else int(round(float(v)))


def round_to_total(values: np.ndarray) -> np.ndarray:
    """Round non-negative (k,) float ``values`` to int64 whose sum is the rounded sum of
    ``values`` (largest remainder), so estimated pixel counts add up to the mapped total."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    out = np.floor(v).astype(np.int64)
    short = int(round(float(v.sum()))) - int(out.sum())
    for i in np.argsort(-(v - out), kind="stable")[:max(short, 0)]:
        out[i] += 1
    return out


@dataclass(frozen=True)
class AreaAdjustedEstimate:
    """Olofsson et al. (2014) estimates; per-class arrays follow the strata order.

    ``error_matrix``: estimated population proportions (k, k), rows = map, columns =
    reference. Accuracies are fractions; ``*_se`` standard errors; ``*_ci95`` 95 % CI
    half-widths; NaN where undefined (e.g. the producer's accuracy of a class with no
    estimated area). Areas are in pixels (float64; hectares and km2 in :meth:`to_dict` when a
    pixel area was given). ``frame``: where the units were drawn (``"map"`` or the frame mask's
    name, e.g. ``"test_blocks"``), ``frame_area_pixels``: (k,) mapped pixels of each stratum
    inside it (None: the map); ``uninterpretable_units``: units left out for reference 0.
    """

    classes: tuple[str, ...]
    design: str
    sample_size: int
    weights: np.ndarray
    error_matrix: np.ndarray
    overall_accuracy: float
    overall_accuracy_se: float
    users_accuracy: np.ndarray
    users_accuracy_se: np.ndarray
    producers_accuracy: np.ndarray
    producers_accuracy_se: np.ndarray
    area_proportion: np.ndarray
    area_proportion_se: np.ndarray
    mapped_area_pixels: np.ndarray
    area_pixels: np.ndarray
    area_pixels_se: np.ndarray
    quantity_disagreement: float
    allocation_disagreement: float
    pixel_area_ha: float | None = None
    frame: str = "map"
    frame_area_pixels: np.ndarray | None = None
    uninterpretable_units: int = 0

    @property
    def overall_accuracy_ci95(self) -> float:
        return Z95 * self.overall_accuracy_se

    @property
    def users_accuracy_ci95(self) -> np.ndarray:
        return Z95 * self.users_accuracy_se

    @property
    def producers_accuracy_ci95(self) -> np.ndarray:
        return Z95 * self.producers_accuracy_se

    @property
    def area_pixels_ci95(self) -> np.ndarray:
        return Z95 * self.area_pixels_se

    def _per_class(self, values: np.ndarray, as_count: bool = False) -> dict[str, Any]:
        conv = _whole if as_count else _num
        return {name: conv(v) for name, v in zip(self.classes, values)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (plain floats/ints/lists; None where undefined). Pixel counts
        are ints (estimated areas rounded so that they add up to the mapped total)."""
        frame_px = self.mapped_area_pixels if self.frame_area_pixels is None else self.frame_area_pixels
        out: dict[str, Any] = {
            "available": True,
            "design": self.design,
            "estimator": "Olofsson et al. 2014 stratified estimators",
            "frame": self.frame,
            "frame_pixels": int(np.sum(frame_px)),
            "frame_area_pixels": self._per_class(frame_px, as_count=True),
            "frame_assumption": _FRAME_ASSUMPTION if self.frame != "map" else None,
            "classes": list(self.classes),
            "sample_size": int(self.sample_size),
            "uninterpretable_units": int(self.uninterpretable_units),
            "strata_weights": self._per_class(self.weights),
            "error_matrix_proportions": [[float(v) for v in row] for row in self.error_matrix],
            "error_matrix_rows": "map",
            "error_matrix_columns": "reference",
            "overall_accuracy": _num(self.overall_accuracy),
            "overall_accuracy_se": _num(self.overall_accuracy_se),
            "overall_accuracy_ci95": _num(self.overall_accuracy_ci95),
            "users_accuracy": self._per_class(self.users_accuracy),
            "users_accuracy_se": self._per_class(self.users_accuracy_se),
            "users_accuracy_ci95": self._per_class(self.users_accuracy_ci95),
            "producers_accuracy": self._per_class(self.producers_accuracy),
            "producers_accuracy_se": self._per_class(self.producers_accuracy_se),
            "producers_accuracy_ci95": self._per_class(self.producers_accuracy_ci95),
            "mapped_area_pixels": self._per_class(self.mapped_area_pixels, as_count=True),
            "area_proportion": self._per_class(self.area_proportion),
            "area_proportion_se": self._per_class(self.area_proportion_se),
            "area_pixels": self._per_class(round_to_total(self.area_pixels), as_count=True),
            "area_pixels_se": self._per_class(self.area_pixels_se),
            "area_pixels_ci95": self._per_class(self.area_pixels_ci95, as_count=True),
            "quantity_disagreement": _num(self.quantity_disagreement),
            "allocation_disagreement": _num(self.allocation_disagreement),
        }
        out.update(self._areas_in_units())
        return out

    def _areas_in_units(self) -> dict[str, Any]:
        """Mapped and estimated areas with 95 % half-widths in ha and km2 (empty without a pixel area)."""
        if self.pixel_area_ha is None:
            return {}
        ha = float(self.pixel_area_ha)
        km2 = ha / HA_PER_KM2
        return {
            "pixel_area_ha": ha,
            "total_area_ha": float(np.sum(self.mapped_area_pixels) * ha),
            "total_area_km2": float(np.sum(self.mapped_area_pixels) * km2),
            "mapped_area_ha": self._per_class(self.mapped_area_pixels * ha),
            "mapped_area_km2": self._per_class(self.mapped_area_pixels * km2),
            "area_ha": self._per_class(self.area_pixels * ha),
            "area_ha_ci95": self._per_class(self.area_pixels_ci95 * ha),
            "area_km2": self._per_class(self.area_pixels * km2),
            "area_km2_ci95": self._per_class(self.area_pixels_ci95 * km2),
        }


_FRAME_ASSUMPTION = ("units were drawn only inside the frame while the strata weights are the whole map's: "
                     "the error rates observed in the frame are assumed to hold for each map class elsewhere")


def _checked_inputs(sample_counts: np.ndarray, mapped_area_pixels: Sequence[float] | np.ndarray,
                    class_names: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Counts (k, k) float64, mapped areas (k,) float64 and k names, checked."""
    n = np.asarray(sample_counts, dtype=np.float64)
    area = np.asarray(mapped_area_pixels, dtype=np.float64).reshape(-1)
    k = area.size
    names = tuple(class_names) if class_names is not None else tuple(f"class_{i + 1}" for i in range(k))
    if n.shape != (k, k) or len(names) != k:
        raise AccuracyError(
            f"sample counts {n.shape}, {k} mapped areas and {len(names)} class names disagree; "
            "give a (k, k) matrix, k areas and k names in the same class order"
        )
    if np.any(n < 0) or np.any(n != np.round(n)) or np.any(area < 0) or area.sum() <= 0:
        raise AccuracyError(
            "sample counts must be non-negative integers and mapped areas non-negative with a "
            "positive total"
        )
    n_i = n.sum(axis=1)
    for i in range(k):
        if area[i] > 0 and n_i[i] < 2 and n_i[i] < area[i]:
            raise AccuracyError(
                f"stratum {names[i]!r} has {int(n_i[i])} sample unit(s) with a reference class out of "
                f"{int(area[i])} mapped pixels; the estimators need at least 2 per mapped class (or "
                "every pixel of the class) - sample or label more units in that stratum"
            )
        if area[i] == 0 and n_i[i] > 0:
            raise AccuracyError(
                f"stratum {names[i]!r} has sample units but no mapped area; check the class order"
            )
    return n, area, names


def _producers_variance(area: np.ndarray, frac: np.ndarray, producers: np.ndarray, users: np.ndarray,
                        dof: np.ndarray, live: np.ndarray) -> np.ndarray:
    """Variance of the producer's accuracies (eq. 7) with ``N_i.`` = mapped pixels of stratum i and
    ``N_.j`` = estimated pixels of class j; NaN for classes with no estimated area. (k,)."""
    k = area.size
    n_col = (area[:, None] * frac).sum(axis=0)
    var_prod = np.full(k, np.nan)
    for j in range(k):
        if n_col[j] <= 0:
            continue
        pj = producers[j]
        t1 = area[j] ** 2 * (1 - pj) ** 2 * users[j] * (1 - users[j]) / dof[j]
        others = [i for i in range(k) if i != j and live[i]]
        t2 = pj**2 * sum(area[i] ** 2 * frac[i, j] * (1 - frac[i, j]) / dof[i] for i in others)
        var_prod[j] = (t1 + t2) / n_col[j] ** 2
    return var_prod


def area_adjusted_accuracy(
    sample_counts: np.ndarray,
    mapped_area_pixels: Sequence[float] | np.ndarray,
    *,
    design: str,
    class_names: Sequence[str] | None = None,
    pixel_area_ha: float | None = None,
    frame: str = "map",
    frame_area_pixels: Sequence[float] | np.ndarray | None = None,
    uninterpretable_units: int = 0,
) -> AreaAdjustedEstimate:
    """Olofsson et al. (2014) estimates from a stratified random sample (module docstring).

    ``sample_counts``: (k, k) counts of interpreted units, rows = map class (stratum), columns
    = reference class. ``mapped_area_pixels``: (k,) mapped pixels per stratum in the whole map.
    ``design``: how the sample was drawn (``"stratified_random"`` or ``"simple_random"``);
    anything else, e.g. ``"training_split"``, raises :class:`AccuracyError`. Every stratum with
    mapped area needs at least 2 sample units (the variances divide by ``n_i. - 1``), unless
    every one of its mapped pixels was sampled (a census, e.g. a class mapped at a single
    pixel): such a stratum's proportions are known exactly and it adds no variance.
    ``frame``/``frame_area_pixels``/``uninterpretable_units`` describe the sample and are
    passed through to the result; ``pixel_area_ha``: area of one pixel in hectares.
    """
    require_probability_design(design)
    n, area, names = _checked_inputs(sample_counts, mapped_area_pixels, class_names)
    n_i = n.sum(axis=1)
    total = area.sum()
    w = area / total
    live = n_i > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(live[:, None], n / np.where(live, n_i, 1.0)[:, None], 0.0)  # n_ij / n_i.
        p = w[:, None] * frac  # eq. 4 / 9
        diag = np.diag(p)
        p_col = p.sum(axis=0)
        users = np.where(live, np.diag(frac), np.nan)
        census = live & (n_i >= area)  # every pixel of the stratum sampled: no sampling variance
        dof = np.where(live & ~census, n_i - 1.0, np.inf)
        u0 = np.nan_to_num(users)
        var_oa = float(np.sum(w**2 * u0 * (1 - u0) / dof))  # eq. 5
        var_users = np.where(live, users * (1 - users) / dof, np.nan)  # eq. 6
        producers = np.where(p_col > 0, diag / p_col, np.nan)
        var_prod = _producers_variance(area, frac, producers, u0, dof, live)
        var_prop = np.sum((w[:, None] * p - p**2) / dof[:, None], axis=0)  # eq. 10
    q, a = disagreement(p)
    return AreaAdjustedEstimate(
        classes=names, design=design, sample_size=int(n.sum()), weights=w, error_matrix=p,
        overall_accuracy=float(diag.sum()), overall_accuracy_se=float(np.sqrt(var_oa)),
        users_accuracy=users, users_accuracy_se=np.sqrt(var_users),
        producers_accuracy=producers, producers_accuracy_se=np.sqrt(var_prod),
        area_proportion=p_col, area_proportion_se=np.sqrt(var_prop),
        mapped_area_pixels=area, area_pixels=total * p_col, area_pixels_se=total * np.sqrt(var_prop),  # eq. 11
        quantity_disagreement=q, allocation_disagreement=a, pixel_area_ha=pixel_area_ha,
        frame=frame,
        frame_area_pixels=None if frame_area_pixels is None else np.asarray(frame_area_pixels, np.float64),
        uninterpretable_units=int(uninterpretable_units),
    )


def _check_interpreted_strata(sample: StratifiedSample, reference: np.ndarray, names: Sequence[str]) -> None:
    """Raise :class:`AccuracyError` naming the first mapped stratum that cannot be estimated: no
    unit drawn, or fewer than 2 interpreted units (reference != 0) without being a census."""
    frame_px = sample.frame_area_pixels or sample.mapped_area_pixels
    for cid, name, mapped, in_frame in zip(sample.class_ids, names, sample.mapped_area_pixels, frame_px):
        units = sample.stratum == cid
        drawn, interpreted = int(units.sum()), int(np.count_nonzero(units & (reference != 0)))
        if mapped == 0 or interpreted >= 2 or interpreted >= mapped:
            continue
        if drawn == 0 and in_frame == 0:
            raise AccuracyError(
                f"class {name!r} is mapped at {mapped} pixel(s) but none lies in the sampling frame "
                f"({sample.frame}), so its accuracy cannot be estimated; widen the frame (more or larger "
                "test blocks) or draw the sample from the whole map"
            )
        if drawn == 0:
            raise AccuracyError(
                f"class {name!r} is mapped at {mapped} pixel(s) but got no sample unit; allocate at "
                "least 2 units per mapped class (evaluation.min_per_stratum)"
            )
        raise AccuracyError(
            f"class {name!r} has {interpreted} sample unit(s) with a reference class of {drawn} drawn "
            f"({drawn - interpreted} could not be interpreted, reference 0) and needs at least 2; label "
            "these units (sample.gpkg, evaluation.sample_reference: file) or draw the sample where "
            "reference labels exist"
        )


def area_adjusted_from_sample(
    sample: StratifiedSample,
    reference_classes: np.ndarray,
    class_table: ClassTable,
    *,
    pixel_area_ha: float | None = None,
) -> AreaAdjustedEstimate:
    """:func:`area_adjusted_accuracy` of a drawn sample and its interpreted reference classes.

    ``reference_classes``: (n,) integer class ids of the sample units in the sample's order,
    0 = could not be interpreted (left out and counted as ``uninterpretable_units``). The
    design, frame and mapped areas come from ``sample``; ``pixel_area_ha``: area of one pixel
    in hectares (areas in ha and km2). Raises :class:`AccuracyError` (message names the class
    and the fix) when a mapped class keeps fewer than 2 interpreted units without being a census.
    """
    ref = np.asarray(reference_classes, dtype=np.int64).reshape(-1)
    names = [class_table.name_of(c) for c in sample.class_ids]
    if ref.size != sample.stratum.size:
        raise AccuracyError(f"{ref.size} reference classes for {sample.stratum.size} sample units; give "
                            "one per unit in the sample's order (0 where it could not be interpreted)")
    _check_interpreted_strata(sample, ref, names)
    counts = sample_error_matrix(sample.stratum, ref, sample.class_ids)
    return area_adjusted_accuracy(
        counts,
        sample.mapped_area_pixels,
        design=sample.design,
        class_names=names,
        pixel_area_ha=pixel_area_ha,
        frame=sample.frame,
        frame_area_pixels=sample.frame_area_pixels,
        uninterpretable_units=int(np.count_nonzero(ref == 0)),
    )


def try_area_adjusted(
    sample: StratifiedSample,
    reference_classes: np.ndarray,
    class_table: ClassTable,
    *,
    pixel_area_ha: float | None = None,
) -> dict[str, Any]:
    """:func:`area_adjusted_from_sample` as a JSON-ready dict that never raises for the data.

    Returns the estimate's :meth:`AreaAdjustedEstimate.to_dict` (``"available": True``) or, when
    no estimate can be made from this sample (e.g. every unit of a mapped class lacks a
    reference label), ``{"available": False, "reason": <the problem and its fix>, ...}`` with
    the design, frame, sample size and uninterpretable units, so the stage can always write
    ``accuracy.json``. Inputs as in :func:`area_adjusted_from_sample`.
    """
    try:
        return area_adjusted_from_sample(sample, reference_classes, class_table,
                                         pixel_area_ha=pixel_area_ha).to_dict()
    except AccuracyError as err:
        log.warning("no area-adjusted estimate: %s", err)
        return unavailable_estimate(
            str(err), design=sample.design, frame=sample.frame, frame_pixels=sample.frame_pixels,
            sample_size=int(sample.stratum.size),
            uninterpretable_units=int(np.count_nonzero(np.asarray(reference_classes).reshape(-1) == 0)),
        )


def unavailable_estimate(reason: str, **context: Any) -> dict[str, Any]:
    """The ``area_adjusted`` entry of ``accuracy.json`` when no estimate could be made:
    ``{"available": False, "reason": <one sentence, capitalised, full stop>, ...context}``
    (e.g. ``frame``, ``sample_size``); for a sample that could not even be drawn too."""
    text = reason.strip().rstrip(".") + "."
    return {"available": False, "reason": text[0].upper() + text[1:],
            "estimator": "Olofsson et al. 2014 stratified estimators", **context}
