"""UNet-ConvLSTM (relearning paper; train model name "unet_convlstm").

Every date of the window (B, t, C, H, W) goes through the same UNet encoder (shared weights,
dates stacked into the batch); a ConvLSTM (:class:`pipeline.models.convlstm.ConvLSTMCell`,
peepholes, eq. (2)) runs over time on the bottleneck maps and its last hidden state replaces
the bottleneck; the skips are the last date's encoder maps, or (``lstm_skips``) the last
hidden state of one ConvLSTM per skip level; the UNet decoder and a 1x1 head give the logits
of the last date. Layers, padding and the receptive field: :mod:`pipeline.models.unet_parts`
(the ConvLSTM widens the radius by ``t (lstm_kernel // 2) 2^depth`` at the bottleneck).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor, nn

from pipeline.models.convlstm import ConvLSTMCell
from pipeline.models.standardize import InputStandardizer
from pipeline.models.unet_parts import (
    UNetDecoder,
    UNetEncoder,
    aligned_halo,
    level_widths,
    pad_to_multiple,
    unet_receptive_radius,
)


@dataclass(frozen=True)
class UNetConvLSTMConfig:
    """Arguments of :class:`UNetConvLSTMClassifier` (saved with the weights).

    ``in_channels``: C; ``num_classes``: K; ``depth``/``width``/``kernel``/``convs``: the UNet
    (see :class:`pipeline.models.unet.UNetConfig`); ``lstm_kernel``: odd kernel of the
    ConvLSTMs; ``lstm_skips``: ConvLSTMs on the skips too; ``peephole``: ConvLSTM peepholes;
    ``dropout``: before the 1x1 head.
    """

    in_channels: int
    num_classes: int
    depth: int = 3
    width: int = 32
    kernel: int = 3
    convs: int = 2
    lstm_kernel: int = 3
    lstm_skips: bool = False
    peephole: bool = True
    dropout: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def receptive_radius(self, time_steps: int) -> int:
        """Receptive-field radius in pixels for windows of ``time_steps`` dates."""
        return unet_receptive_radius(self.depth, self.kernel, convs=self.convs, bottleneck_steps=time_steps,
                                     skip_steps=time_steps if self.lstm_skips else 0, lstm_kernel=self.lstm_kernel)

    def halo(self, time_steps: int) -> int:
        """Tile halo for exact tiled prediction (radius rounded up to a multiple of 2^depth)."""
        return aligned_halo(self.receptive_radius(time_steps), self.depth)


class UNetConvLSTMClassifier(nn.Module):
    """Window (B, t, C, H, W) -> logits (B, K, H, W) of its last date."""

    def __init__(self, config: UNetConvLSTMConfig) -> None:
        super().__init__()
        self.config = config
        widths = level_widths(config.width, config.depth)
        self.standardize = InputStandardizer(config.in_channels)
        self.encoder = UNetEncoder(config.in_channels, depth=config.depth, width=config.width, kernel=config.kernel,
                                   convs=config.convs)
        self.temporal = ConvLSTMCell(widths[-1], widths[-1], kernel=config.lstm_kernel, peephole=config.peephole)
        self.skip_temporal = nn.ModuleList(
            ConvLSTMCell(c, c, kernel=config.lstm_kernel, peephole=config.peephole) for c in widths[:-1]
        ) if config.lstm_skips else None
        self.decoder = UNetDecoder(depth=config.depth, width=config.width, kernel=config.kernel, convs=config.convs)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Conv2d(config.width, config.num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: features (B, t, C, H, W), any float dtype, NaN/Inf where missing (0 after
        standardisation); any t >= 1, H, W. Returns logits (B, K, H, W) float32 for the last date."""
        cfg = self.config
        if x.dim() != 5 or x.shape[2] != cfg.in_channels:
            raise ValueError(f"expected (B, t, {cfg.in_channels}, H, W) features, got {tuple(x.shape)}")
        b, t, c, h, w = x.shape
        z = pad_to_multiple(self.standardize(x, channel_dim=2).reshape(b * t, c, h, w), 2**cfg.depth)
        feats = [f.unflatten(0, (b, t)) for f in self.encoder(z)]  # level l: (B, t, c_l, h_l, w_l)
        bottom, _ = self.temporal(feats[-1])
        if self.skip_temporal is None:
            skips = [f[:, -1] for f in feats[:-1]]
        else:
            skips = [cell(f)[0] for cell, f in zip(self.skip_temporal, feats[:-1], strict=True)]
        y = self.decoder(bottom, skips)
        return self.head(self.dropout(y))[..., :h, :w]
