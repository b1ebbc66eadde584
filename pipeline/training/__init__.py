"""Training of the land-cover models: data sampling, losses, loop, checkpoints, baselines.

Public entry points: :func:`train_model` (the train stage), :func:`load_model` and
:func:`predict_window` (for the prediction stage), :class:`TrainOptions`.
"""

from __future__ import annotations

from pipeline.training.inference import build_model, load_model, predict_window
from pipeline.training.options import ClassEntry, TrainOptions, parse_train_options
from pipeline.training.trainer import TrainResult, train_model

__all__ = [
    "ClassEntry", "TrainOptions", "TrainResult", "build_model", "load_model", "parse_train_options",
    "predict_window", "train_model",
]
