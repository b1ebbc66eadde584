"""Receptive-field radius, tile alignment and tile halo of a trained model, from its metadata.

``meta`` is the metadata of :func:`pipeline.inference.loading.load_model`: ``model`` (name),
``time_steps``, ``options`` (the train options) and, for torch models, ``model_config``.
The formula that applies is the model's receptive rule in :mod:`pipeline.models.registry`.
Tiled prediction (:func:`pipeline.tiling.predict.predict_tiled`) is exact when the halo is at
least the radius and, for the UNet models (max-pooling: equivariant to shifts by multiples
of 2^depth only), tile origins and halo are multiples of :func:`tile_alignment`.
"""

from __future__ import annotations

import math
from typing import Any

from pipeline.models.registry import MODELS
from pipeline.models.unet_parts import unet_receptive_radius


def _setting(meta: dict[str, Any], config_key: str, option_key: str, default: Any) -> Any:
    cfg = meta.get("model_config") or {}
    if config_key in cfg:
        return cfg[config_key]
    return meta.get("options", {}).get(option_key, default)


def receptive_radius(meta: dict[str, Any]) -> int:
    """Receptive-field radius in pixels of a trained model.

    ConvLSTM: ``(k // 2) (t + 1)`` (input conv plus one state conv per step, an upper bound);
    UNet models: :func:`pipeline.models.unet_parts.unet_receptive_radius` (unet_convlstm with
    its ConvLSTM of t steps at the bottleneck and, with lstm_skips, on the skips); per-pixel
    models (pixel_lstm, rf, svm) and names outside the registry: 0.
    """
    spec = MODELS.get(meta["model"])
    rule = spec.receptive_rule if spec else "pixel"
    t = int(meta["time_steps"])
    if rule == "convlstm":
        k = int(meta["options"].get("kernel", 3))
        return (k // 2) * (t + 1)
    if rule in ("unet", "unet_convlstm"):
        depth = int(_setting(meta, "depth", "unet_depth", 3))
        kernel = int(_setting(meta, "kernel", "kernel", 3))
        convs = int(_setting(meta, "convs", "_convs", 2))
        if rule == "unet":
            return unet_receptive_radius(depth, kernel, convs=convs)
        skips = bool(_setting(meta, "lstm_skips", "unet_lstm_skips", False))
        lstm_kernel = int(_setting(meta, "lstm_kernel", "kernel", kernel))
        return unet_receptive_radius(depth, kernel, convs=convs, bottleneck_steps=t, skip_steps=t if skips else 0,
                                     lstm_kernel=lstm_kernel)
    return 0


def tile_alignment(meta: dict[str, Any]) -> int:
    """Multiple that tile origins and halo must be of: 2^depth for the UNet models, else 1."""
    spec = MODELS.get(meta["model"])
    if spec and spec.pooled:
        return int(2 ** int(_setting(meta, "depth", "unet_depth", 3)))
    return 1


def _round_up(value: int, step: int) -> int:
    return int(math.ceil(value / step) * step)


def tile_halo(meta: dict[str, Any]) -> int:
    """Halo for exact tiling: the receptive radius rounded up to :func:`tile_alignment`."""
    return _round_up(receptive_radius(meta), tile_alignment(meta))


def aligned_tile(tile: int, meta: dict[str, Any]) -> int:
    """``tile`` rounded up to a multiple of :func:`tile_alignment` (unchanged for most models)."""
    return _round_up(int(tile), tile_alignment(meta))
