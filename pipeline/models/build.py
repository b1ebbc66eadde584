"""The torch models by name: ``build_model(name, config)`` for training and for loading.

The family of each name comes from :mod:`pipeline.models.registry`; ``config`` is the
``to_dict()`` of the model's config dataclass, as stored in the checkpoint
(:func:`pipeline.training.model_config.model_config_for` builds it for a training run).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pipeline.errors import CheckpointError
from pipeline.models.convlstm import ConvLSTMClassifier, ConvLSTMConfig
from pipeline.models.pixel_lstm import PixelLSTMClassifier, PixelLSTMConfig
from pipeline.models.registry import models_of
from pipeline.models.unet import UNetClassifier, UNetConfig
from pipeline.models.unet_convlstm import UNetConvLSTMClassifier, UNetConvLSTMConfig


def build_model(name: str, config: dict[str, Any]) -> nn.Module:
    """Instantiate the torch model ``name`` (a model of :data:`pipeline.models.registry.TORCH_MODELS`:
    "semi_convlstm", "convlstm", "pixel_lstm", "unet", "unet_stack", "unet_convlstm")."""
    if name in models_of("torch_convlstm"):
        return ConvLSTMClassifier(ConvLSTMConfig(**config))
    if name in models_of("torch_pixel"):
        return PixelLSTMClassifier(PixelLSTMConfig(**config))
    if name in models_of("torch_unet"):
        return UNetClassifier(UNetConfig(**config))
    if name in models_of("torch_unet_convlstm"):
        return UNetConvLSTMClassifier(UNetConvLSTMConfig(**config))
    raise CheckpointError(f"unknown model name {name!r} in checkpoint; retrain with this pipeline version")
