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


@dataclass(frozen=True)
class AreaAdjustedEstimate:
    """Olofsson et al. (2014) estimates; per-class arrays follow the strata order.

    ``error_matrix``: estimated population proportions (k, k), rows = map, columns =
    reference. Accuracies are fractions; ``*_se`` standard errors; ``*_ci95`` 95 % CI
    half-widths; NaN where undefined (e.g. the producer's accuracy of a class with no
    estimated area). Areas are in pixels (``area_ha*`` in hectares when a pixel area was given).
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (plain floats/ints/lists; None where undefined)."""

        def num(v: float) -> float | None:
            return None if not np.isfinite(v) else float(v)

        def per_class(values: np.ndarray) -> dict[str, float | None]:
            return {name: num(v) for name, v in zip(self.classes, values)}

        out: dict[str, Any] = {
            "design": self.design,
            "estimator": "Olofsson et al. 2014 stratified estimators",
            "classes": list(self.classes),
            "sample_size": int(self.sample_size),
            "strata_weights": per_class(self.weights),
            "error_matrix_proportions": [[float(v) for v in row] for row in self.error_matrix],
            "error_matrix_rows": "map",
            "error_matrix_columns": "reference",
            "overall_accuracy": num(self.overall_accuracy),
            "overall_accuracy_se": num(self.overall_accuracy_se),
            "overall_accuracy_ci95": num(self.overall_accuracy_ci95),
            "users_accuracy": per_class(self.users_accuracy),
            "users_accuracy_se": per_class(self.users_accuracy_se),
            "users_accuracy_ci95": per_class(self.users_accuracy_ci95),
            "producers_accuracy": per_class(self.producers_accuracy),
            "producers_accuracy_se": per_class(self.producers_accuracy_se),
            "producers_accuracy_ci95": per_class(self.producers_accuracy_ci95),
            "mapped_area_pixels": per_class(self.mapped_area_pixels),
            "area_proportion": per_class(self.area_proportion),
            "area_proportion_se": per_class(self.area_proportion_se),
            "area_pixels": per_class(self.area_pixels),
            "area_pixels_se": per_class(self.area_pixels_se),
            "area_pixels_ci95": per_class(self.area_pixels_ci95),
            "quantity_disagreement": num(self.quantity_disagreement),
            "allocation_disagreement": num(self.allocation_disagreement),
        }
        if self.pixel_area_ha is not None:
            out["pixel_area_ha"] = float(self.pixel_area_ha)
            out["area_ha"] = per_class(self.area_pixels * self.pixel_area_ha)
            out["area_ha_ci95"] = per_class(self.area_pixels_ci95 * self.pixel_area_ha)
        return out


def area_adjusted_accuracy(
    sample_counts: np.ndarray,
    mapped_area_pixels: Sequence[float] | np.ndarray,
    *,
    design: str,
    class_names: Sequence[str] | None = None,
    pixel_area_ha: float | None = None,
) -> AreaAdjustedEstimate:
    """Olofsson et al. (2014) estimates from a stratified random sample (module docstring).

    ``sample_counts``: (k, k) counts, rows = map class (stratum), columns = reference class.
    ``mapped_area_pixels``: (k,) mapped pixels per stratum. ``design``: how the sample was
    drawn (``"stratified_random"`` or ``"simple_random"``); anything else, e.g.
    ``"training_split"``, raises :class:`AccuracyError`. Every stratum with mapped area needs
    at least 2 sample units (the variances divide by ``n_i. - 1``), unless every one of its
    pixels was sampled (a census, e.g. a class mapped at a single pixel): such a stratum's
    proportions are known exactly and it adds no variance.
    """
    require_probability_design(design)
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
                f"stratum {names[i]!r} has {int(n_i[i])} sample unit(s); the estimators need at "
                "least 2 per mapped class - sample more units in that stratum"
            )
        if area[i] == 0 and n_i[i] > 0:
            raise AccuracyError(
                f"stratum {names[i]!r} has sample units but no mapped area; check the class order"
            )
    total = area.sum()
    w = area / total
    live = n_i > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(live[:, None], n / np.where(live, n_i, 1.0)[:, None], 0.0)  # n_ij / n_i.
        p = w[:, None] * frac  # eq. 4 / 9
        diag = np.diag(p)
        p_col = p.sum(axis=0)
        oa = float(diag.sum())
        users = np.where(live, np.diag(frac), np.nan)
        census = live & (n_i >= area)  # every pixel of the stratum sampled: no sampling variance
        dof = np.where(live & ~census, n_i - 1.0, np.inf)
        u0 = np.nan_to_num(users)
        var_oa = float(np.sum(w**2 * u0 * (1 - u0) / dof))  # eq. 5
        var_users = np.where(live, users * (1 - users) / dof, np.nan)  # eq. 6
        producers = np.where(p_col > 0, diag / p_col, np.nan)
        # eq. 7 with N_i. = mapped pixels of stratum i, N_.j = estimated pixels of class j
        n_col = (area[:, None] * frac).sum(axis=0)
        var_prod = np.full(k, np.nan)
        for j in range(k):
            if n_col[j] <= 0:
                continue
            pj = producers[j]
            t1 = area[j] ** 2 * (1 - pj) ** 2 * u0[j] * (1 - u0[j]) / dof[j]
            others = [i for i in range(k) if i != j and live[i]]
            t2 = pj**2 * sum(area[i] ** 2 * frac[i, j] * (1 - frac[i, j]) / dof[i] for i in others)
            var_prod[j] = (t1 + t2) / n_col[j] ** 2
        var_prop = np.sum((w[:, None] * p - p**2) / dof[:, None], axis=0)  # eq. 10
    q, a = disagreement(p)
    return AreaAdjustedEstimate(
        classes=names,
        design=design,
        sample_size=int(n.sum()),
        weights=w,
        error_matrix=p,
        overall_accuracy=oa,
        overall_accuracy_se=float(np.sqrt(var_oa)),
        users_accuracy=users,
        users_accuracy_se=np.sqrt(var_users),
        producers_accuracy=producers,
        producers_accuracy_se=np.sqrt(var_prod),
        area_proportion=p_col,
        area_proportion_se=np.sqrt(var_prop),
        mapped_area_pixels=area,
        area_pixels=total * p_col,  # eq. 11
        area_pixels_se=total * np.sqrt(var_prop),
        quantity_disagreement=q,
        allocation_disagreement=a,
        pixel_area_ha=pixel_area_ha,
    )


def area_adjusted_from_sample(
    sample: StratifiedSample,
    reference_classes: np.ndarray,
    class_table: ClassTable,
    *,
    pixel_area_ha: float | None = None,
) -> AreaAdjustedEstimate:
    """:func:`area_adjusted_accuracy` of a drawn sample and its interpreted reference classes.

    ``reference_classes``: (n,) class ids of the sample units in the sample's order, 0 = could
    not be interpreted (left out). The design and mapped areas come from ``sample``.
    """
    counts = sample_error_matrix(sample.stratum, reference_classes, sample.class_ids)
    return area_adjusted_accuracy(
        counts,
        sample.mapped_area_pixels,
        design=sample.design,
        class_names=[class_table.name_of(c) for c in sample.class_ids],
        pixel_area_ha=pixel_area_ha,
    )
