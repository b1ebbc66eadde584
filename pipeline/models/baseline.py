"""The scikit-learn baselines (RF / SVM) as trained models: the per-pixel window classifier and
loading it from a trained folder.

A sample is one pixel at the end date of a window; its feature vector is the time-stacked
features of the window's ``t`` dates flattened to t*C values, standardised per channel
(training statistics) with non-finite values set to 0 (the package's masking rule,
:func:`pixel_matrix`). Fitting and saving are :mod:`pipeline.training.baselines`; the folder
holds ``model.joblib`` (a pickle: only load files this pipeline wrote) with ``model.json``
holding its sha256, checked before unpickling (:mod:`pipeline.models.files`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import torch
from torch import Tensor

from pipeline.errors import CheckpointError
from pipeline.models.files import JOBLIB_NAME, META_NAME


def pixel_matrix(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(N, t, C) features -> (N, t*C) float32 standardised, non-finite -> 0."""
    z = (x.astype(np.float32) - mean.astype(np.float32)) / std.astype(np.float32)
    z[~np.isfinite(z)] = 0.0
    return z.reshape(z.shape[0], -1)


class WindowPixelClassifier:
    """A fitted scikit-learn classifier applied pixel by pixel to feature windows."""

    def __init__(self, estimator: Any, *, mean: np.ndarray, std: np.ndarray, time_steps: int, num_classes: int) -> None:
        self.estimator = estimator
        self.mean, self.std = mean, std
        self.time_steps, self.num_classes = time_steps, num_classes

    def predict_proba_pixels(self, x: np.ndarray) -> np.ndarray:
        """(N, t, C) raw features -> (N, K) float32 probabilities (K = class table size)."""
        p = self.estimator.predict_proba(pixel_matrix(x, self.mean, self.std))
        out = np.zeros((x.shape[0], self.num_classes), dtype=np.float32)
        out[:, self.estimator.classes_.astype(int)] = p
        return out

    def predict_proba_window(self, x: Tensor) -> Tensor:
        """(B, t, C, H, W) features (NaN where missing) -> (B, K, H, W) float32 probabilities."""
        b, t, c, h, w = x.shape
        pix = x.detach().cpu().float().permute(0, 3, 4, 1, 2).reshape(-1, t, c).numpy()
        p = self.predict_proba_pixels(pix)
        return torch.from_numpy(p).reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()


def load_baseline(model_dir: str | os.PathLike[str]) -> tuple[WindowPixelClassifier, dict[str, Any]]:
    """Load ``model.joblib`` after checking its sha256 against ``model.json``; CheckpointError
    when either is missing, altered, or pickles a class this version of the pipeline lacks."""
    d = Path(model_dir)
    try:
        meta = json.loads((d / META_NAME).read_text())
        blob = (d / JOBLIB_NAME).read_bytes()
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"baseline model in {d} is missing or unreadable ({exc}); retrain it") from exc
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"{d / JOBLIB_NAME} fails its sha256 check against {META_NAME}; retrain it")
    try:
        clf = joblib.load(d / JOBLIB_NAME)
    except (AttributeError, ImportError) as exc:  # pickled a class at a path this version does not have
        raise CheckpointError(f"{d / JOBLIB_NAME} was written by another version of the pipeline ({exc}); "
                              f"retrain it") from exc
    return clf, meta
