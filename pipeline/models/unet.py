"""UNet classifiers of a window's last date (relearning paper's UNet; train model names
"unet" and "unet_stack").

* ``temporal="last"`` (model "unet"): the UNet sees only the last date of the window
  (B, t, C, H, W) -> its (B, C, H, W) slice; the other dates are ignored (train it with
  ``time_steps: 1`` to use every labelled date).
* ``temporal="stack"`` (model "unet_stack"): the window's t dates are stacked as channels
  (date-major: channel ``i * C + c`` = date i, feature c) into one (B, t C, H, W) image; the
  window length is fixed at ``time_steps``.

Layers, padding to a multiple of 2^depth and the receptive-field radius: see
:mod:`pipeline.models.unet_parts`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from torch import Tensor, nn

from pipeline.models.standardize import InputStandardizer
from pipeline.models.unet_parts import (
    UNetDecoder,
    UNetEncoder,
    aligned_halo,
    pad_to_multiple,
    unet_receptive_radius,
)


@dataclass(frozen=True)
class UNetConfig:
    """Arguments of :class:`UNetClassifier` (saved with the weights).

    ``in_channels``: feature channels C per date; ``num_classes``: K outputs (class table
    order); ``temporal``: "last" | "stack" (see the module doc); ``time_steps``: window length
    t ("stack" requires exactly t dates); ``depth``: pooling levels (resolution / 2^depth at
    the bottleneck); ``width``: channels of level 0 (doubled per level); ``kernel``: odd
    convolution size; ``convs``: convolutions per block; ``dropout``: before the 1x1 head.
    """

    in_channels: int
    num_classes: int
    temporal: Literal["last", "stack"] = "last"
    time_steps: int = 1
    depth: int = 3
    width: int = 32
    kernel: int = 3
    convs: int = 2
    dropout: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def receptive_radius(self) -> int:
        """Receptive-field radius in pixels (:func:`unet_receptive_radius`)."""
        return unet_receptive_radius(self.depth, self.kernel, convs=self.convs)

    @property
    def halo(self) -> int:
        """Tile halo for exact tiled prediction (radius rounded up to a multiple of 2^depth)."""
        return aligned_halo(self.receptive_radius, self.depth)


class UNetClassifier(nn.Module):
    """Window (B, t, C, H, W) -> logits (B, K, H, W) of its last date with a 2-D UNet."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if config.temporal not in ("last", "stack"):
            raise ValueError(f"temporal must be 'last' or 'stack', got {config.temporal!r}")
        self.config = config
        self.standardize = InputStandardizer(config.in_channels)
        c_in = config.in_channels * (config.time_steps if config.temporal == "stack" else 1)
        self.encoder = UNetEncoder(c_in, depth=config.depth, width=config.width, kernel=config.kernel,
                                   convs=config.convs)
        self.decoder = UNetDecoder(depth=config.depth, width=config.width, kernel=config.kernel, convs=config.convs)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Conv2d(config.width, config.num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: features (B, t, C, H, W), any float dtype, NaN/Inf where missing (0 after
        standardisation); any H, W. Returns logits (B, K, H, W) float32 for the last date."""
        cfg = self.config
        if x.dim() != 5 or x.shape[2] != cfg.in_channels:
            raise ValueError(f"expected (B, t, {cfg.in_channels}, H, W) features, got {tuple(x.shape)}")
        if cfg.temporal == "stack" and x.shape[1] != cfg.time_steps:
            raise ValueError(f"unet_stack needs windows of exactly {cfg.time_steps} dates, got {x.shape[1]}")
        b, t, c, h, w = x.shape
        if cfg.temporal == "last":
            z = self.standardize(x[:, -1], channel_dim=1)
        else:
            z = self.standardize(x, channel_dim=2).reshape(b, t * c, h, w)
        feats = self.encoder(pad_to_multiple(z, 2**cfg.depth))
        y = self.decoder(feats[-1], feats[:-1])
        return self.head(self.dropout(y))[..., :h, :w]
