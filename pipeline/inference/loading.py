"""Load a trained model from its folder and run it on one batch of windows.

:func:`load_model` reads what the train stage wrote (``model.pt`` of the torch models,
``model.joblib`` of the scikit-learn baselines); :func:`predict_window` is the forward pass
both the prediction (:mod:`pipeline.inference.prediction`) and the relearning inputs
(:mod:`pipeline.inference.relearning`) run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from pipeline.errors import CheckpointError
from pipeline.models.baseline import WindowPixelClassifier, load_baseline
from pipeline.models.build import build_model
from pipeline.models.device import autocast, inference_mode
from pipeline.models.files import JOBLIB_NAME, MODEL_NAME, load_checkpoint


def load_model(model_dir: str | os.PathLike[str]) -> tuple[nn.Module | WindowPixelClassifier, dict[str, Any]]:
    """Load the best model of a train output folder (``results/{aoi}/models/{model}``).

    Returns the model (torch module in eval mode on CPU, or a :class:`WindowPixelClassifier`)
    and metadata: ``model``, ``classes`` (list of {id, name, color}, output index order),
    ``time_steps``, ``in_channels``, ``num_classes``, ``epoch``, ``metrics``, ``options``,
    ``model_config`` (torch models) and ``relearning`` (None, or the first-stage record of a
    relearning model, see :func:`pipeline.training.relearning.relearning_features`).
    Raises CheckpointError when the files are missing or corrupt.
    """
    d = Path(model_dir)
    if (d / JOBLIB_NAME).exists():
        clf, meta = load_baseline(d)
        return clf, {"model": meta["model_name"], "classes": meta["classes"], "time_steps": meta["time_steps"],
                     "in_channels": meta["data_signature"][1], "num_classes": len(meta["classes"]), "epoch": 1,
                     "metrics": meta["metrics"], "options": meta["options"], "relearning": meta.get("relearning")}
    ck = load_checkpoint(d / MODEL_NAME)
    if ck.get("kind") != "model":
        raise CheckpointError(f"{d / MODEL_NAME} is not a model file (kind {ck.get('kind')!r}); retrain")
    model = build_model(ck["model_name"], dict(ck["model_config"]))
    try:
        model.load_state_dict(ck["model_state"])
    except RuntimeError as exc:
        raise CheckpointError(f"{d / MODEL_NAME} weights do not fit model {ck['model_name']!r}: {exc}") from exc
    model.eval()
    cfg = ck["model_config"]
    return model, {"model": ck["model_name"], "classes": ck["classes"], "time_steps": ck["time_steps"],
                   "in_channels": cfg["in_channels"], "num_classes": cfg["num_classes"], "epoch": ck["epoch"],
                   "metrics": ck["metrics"], "options": json.loads(ck["options_json"]), "model_config": dict(cfg),
                   "relearning": ck.get("relearning")}


def predict_window(model: nn.Module | WindowPixelClassifier, x: Tensor) -> Tensor:
    """Class probabilities of the last date of windows ``x``.

    ``x``: features (B, t, C, H, W), float16/float32, NaN where missing (masked like in
    training). Returns (B, K, H, W) float32 softmax probabilities in class table order, on the
    model's device (CPU for scikit-learn models); bf16 autocast when the model is on CUDA.
    """
    if isinstance(model, WindowPixelClassifier):
        return model.predict_proba_window(x)
    device = next(model.parameters()).device
    with inference_mode(model), autocast(device):
        logits = model(x.to(device))
    return logits.float().softmax(dim=1)
