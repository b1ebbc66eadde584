"""The torch models by name: ``build_model(name, config)`` for training and for loading.

Names: "semi_convlstm" and "convlstm" (:mod:`pipeline.models.convlstm`), "pixel_lstm"
(:mod:`pipeline.models.pixel_lstm`), "unet" and "unet_stack" (:mod:`pipeline.models.unet`),
"unet_convlstm" (:mod:`pipeline.models.unet_convlstm`); ``config`` is the ``to_dict()`` of the
model's config dataclass, as stored in the checkpoint.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pipeline.errors import CheckpointError
from pipeline.models.convlstm import ConvLSTMClassifier, ConvLSTMConfig
from pipeline.models.pixel_lstm import PixelLSTMClassifier, PixelLSTMConfig
from pipeline.models.unet import UNetClassifier, UNetConfig
from pipeline.models.unet_convlstm import UNetConvLSTMClassifier, UNetConvLSTMConfig


def build_model(name: str, config: dict[str, Any]) -> nn.Module:
    """Instantiate the torch model ``name`` ("semi_convlstm", "convlstm", "pixel_lstm", "unet",
    "unet_stack", "unet_convlstm")."""
    if name in ("semi_convlstm", "convlstm"):
        return ConvLSTMClassifier(ConvLSTMConfig(**config))
    if name == "pixel_lstm":
        return PixelLSTMClassifier(PixelLSTMConfig(**config))
    if name in ("unet", "unet_stack"):
        return UNetClassifier(UNetConfig(**config))
    if name == "unet_convlstm":
        return UNetConvLSTMClassifier(UNetConvLSTMConfig(**config))
    raise CheckpointError(f"unknown model name {name!r} in checkpoint; retrain with this pipeline version")
