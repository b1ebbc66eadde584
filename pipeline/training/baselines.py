"""Random forest and SVM baselines (paper section 4.1) on per-pixel window features.

A sample is one labelled pixel at the end date ``e`` of a window; its feature vector is the
time-stacked features of the window's ``t`` dates, ``x[e-t+1 .. e, :, y, x]`` flattened to
t*C values, standardised per channel (training statistics) with non-finite values set to 0
(the package's masking rule). Classes are weighted 'balanced'; hyper-parameters come from a
seeded RandomizedSearchCV over the paper's grids (3-fold stratified CV, weighted F1).
The RF ``min_samples_split``/``min_samples_leaf`` lists are garbled in the paper; the values
used here cover its reported optima (2/15/10 and 1/10).

Saved as ``model.joblib`` (a pickle: only load files this pipeline wrote) with ``model.json``
holding its sha256; the saved classifier (:class:`~pipeline.models.baseline.WindowPixelClassifier`)
and loading it (:func:`~pipeline.models.baseline.load_baseline`) are :mod:`pipeline.models.baseline`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold
from sklearn.svm import SVC

from pipeline.atomic import atomic_path, write_text_atomic
from pipeline.errors import ConfigError, TrainingError
from pipeline.models.baseline import WindowPixelClassifier, pixel_matrix
from pipeline.models.files import JOBLIB_NAME, META_NAME
from pipeline.training.metrics import f1_weighted, overall_accuracy
from pipeline.training.options import TrainOptions

log = logging.getLogger(__name__)

RF_SPACE: dict[str, tuple[Any, ...]] = {
    "n_estimators": (120, 300, 500, 800, 1200),
    "max_depth": (5, 8, 15, 25, 30, None),
    "min_samples_split": (2, 5, 10, 15, 100),
    "min_samples_leaf": (1, 2, 5, 10),
    "max_features": ("log2", "sqrt", None),
}
SVM_SPACE: dict[str, tuple[Any, ...]] = {
    "C": (0.01, 0.03, 0.1, 0.3, 1, 3, 5, 7, 10, 15, 30, 100, 300),
    "gamma": (0.1, 1, 2, 4, 10, "auto"),
}


def sample_windows(labels: np.ndarray, ends: np.ndarray, *, max_per_class: int | None, seed: int) -> np.ndarray:
    """(end, y, x) of labelled pixels (``labels`` (T, H, W) int16, -1 = none) at window ends,
    at most ``max_per_class`` per class (seeded random) -> (N, 3) int64."""
    sub = labels[ends]
    rng = np.random.default_rng(seed)
    rows = []
    for k in np.unique(sub[sub >= 0]):
        e, y, x = np.nonzero(sub == k)
        idx = np.arange(e.size)
        if max_per_class is not None and e.size > max_per_class:
            idx = np.sort(rng.choice(e.size, size=max_per_class, replace=False))
        rows.append(np.stack([ends[e[idx]], y[idx], x[idx]], axis=1))
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 3), dtype=np.int64)


def gather_pixels(features: np.ndarray, windows: np.ndarray, time_steps: int) -> np.ndarray:
    """``features`` (T, C, H, W) at ``windows`` (N, 3) (end, y, x) -> (N, t, C)."""
    tt = windows[:, :1] + np.arange(-time_steps + 1, 1)[None, :]
    return features[tt, :, windows[:, 1:2], windows[:, 2:3]]


def _search_space(options: TrainOptions) -> dict[str, list[Any]]:
    space = dict(RF_SPACE if options.model == "rf" else SVM_SPACE)
    for key, values in (options.search_space or {}).items():
        if key not in space:
            raise ConfigError(f"search_space key {key!r} is not a {options.model} parameter; allowed: {sorted(space)}")
        space[key] = tuple(values)
    return {k: list(v) for k, v in space.items()}


def fit_baseline(
    features: np.ndarray, train_labels: np.ndarray, val_labels: np.ndarray, ends: np.ndarray, *,
    options: TrainOptions, mean: np.ndarray, std: np.ndarray, out_dir: Path, meta: Mapping[str, Any],
    threads: int | None = None,
) -> dict[str, Any]:
    """Fit RF or SVM on training pixels, score validation pixels, save ``model.joblib`` +
    ``model.json``. ``features`` (T, C, H, W) float16; ``*_labels`` (T, H, W) int16 (-1 none).
    Returns metrics {val_oa, val_f1, best_params, n_train, n_val, seconds}."""
    t0 = time.perf_counter()
    k = len(meta["classes"])
    tr = sample_windows(train_labels, ends, max_per_class=options.max_pixels_per_class, seed=options.seed)
    if tr.size == 0:
        raise TrainingError("no labelled pixel in the training split; add labels or lower 'val_fraction'")
    y = train_labels[tr[:, 0], tr[:, 1], tr[:, 2]].astype(np.int64)
    x = pixel_matrix(gather_pixels(features, tr, options.time_steps), mean, std)
    counts = np.bincount(y, minlength=k)
    n_splits = min(options.cv_folds, int(counts[counts > 0].min()))
    if n_splits < 2:
        rare = [meta["classes"][i]["name"] for i in np.nonzero(counts == 1)[0]]
        raise TrainingError(f"classes {rare} have a single labelled training pixel; cross-validation needs 2 - add labels")
    if options.model == "rf":
        est: Any = RandomForestClassifier(class_weight="balanced", random_state=options.seed, n_jobs=1)
    else:
        est = SVC(kernel="rbf", class_weight="balanced", random_state=options.seed)
    cv = StratifiedKFold(n_splits, shuffle=True, random_state=options.seed)
    search = RandomizedSearchCV(
        est, _search_space(options), n_iter=options.n_iter, scoring="f1_weighted", refit=False,
        cv=cv, random_state=options.seed,
        n_jobs=threads or 1,
    )
    log.info("%s random search: %d pixels x %d features, %d candidates", options.model, *x.shape, options.n_iter)
    search.fit(x, y)
    best: Any = clone(est).set_params(**search.best_params_)
    if options.model == "svm":  # Platt scaling for probabilities, fitted out of fold
        best = CalibratedClassifierCV(best, method="sigmoid", cv=cv, ensemble=False)
    best.fit(x, y)
    clf = WindowPixelClassifier(best, mean=mean, std=std, time_steps=options.time_steps, num_classes=k)

    va = sample_windows(val_labels, ends, max_per_class=options.max_pixels_per_class, seed=options.seed + 1)
    metrics: dict[str, Any] = {"val_oa": float("nan"), "val_f1": float("nan")}
    if va.size:
        pred = clf.predict_proba_pixels(gather_pixels(features, va, options.time_steps)).argmax(1)
        ref = val_labels[va[:, 0], va[:, 1], va[:, 2]].astype(np.int64)
        cm = np.bincount(ref * k + pred, minlength=k * k).reshape(k, k)
        metrics = {"val_oa": overall_accuracy(cm), "val_f1": f1_weighted(cm)}
    metrics.update(best_params={kk: v for kk, v in search.best_params_.items()}, cv_f1=float(search.best_score_),
                   n_train=len(tr), n_val=len(va), seconds=time.perf_counter() - t0)
    final = out_dir / JOBLIB_NAME
    with atomic_path(final) as tmp:
        joblib.dump(clf, tmp)
    digest = hashlib.sha256(final.read_bytes()).hexdigest()
    write_text_atomic(out_dir / META_NAME, json.dumps(
        {"kind": "sklearn", **meta, "sha256": digest, "metrics": metrics, "options": options.to_dict()}, indent=2, default=str))
    return metrics
