"""The config of the torch model a training run builds (:func:`model_config_for`)."""

from __future__ import annotations

from typing import Any

from pipeline.models.convlstm import ConvLSTMConfig
from pipeline.models.pixel_lstm import PixelLSTMConfig
from pipeline.models.registry import models_of
from pipeline.models.unet import UNetConfig
from pipeline.models.unet_convlstm import UNetConvLSTMConfig
from pipeline.training.options import TrainOptions


def model_config_for(name: str, *, in_channels: int, num_classes: int, options: TrainOptions) -> dict[str, Any]:
    """Config dict of the torch model ``name`` for the given data and options
    (the ``config`` of :func:`pipeline.models.build.build_model`)."""
    if name in models_of("torch_convlstm"):
        return ConvLSTMConfig(in_channels, num_classes, hidden=options.hidden, kernel=options.kernel,
                              dropout=options.dropout).to_dict()
    if name in models_of("torch_pixel"):
        return PixelLSTMConfig(in_channels, num_classes, hidden=options.lstm_hidden, dropout=options.dropout).to_dict()
    if name in models_of("torch_unet"):
        return UNetConfig(in_channels, num_classes, temporal="last" if name == "unet" else "stack",
                          time_steps=options.time_steps, depth=options.unet_depth, width=options.unet_width,
                          kernel=options.kernel, dropout=options.dropout).to_dict()
    if name in models_of("torch_unet_convlstm"):
        return UNetConvLSTMConfig(in_channels, num_classes, depth=options.unet_depth, width=options.unet_width,
                                  kernel=options.kernel, lstm_kernel=options.kernel,
                                  lstm_skips=options.unet_lstm_skips, dropout=options.dropout).to_dict()
    raise ValueError(f"{name!r} is not a torch model")
