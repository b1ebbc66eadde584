"""Per-pixel LSTM baseline of the paper (section 4.1): 256 units over each pixel's sequence.

Each pixel's window ``(x_k .. x_{k+t-1})`` of feature vectors is classified on its own (no
spatial context); the last hidden state goes through dropout and a linear layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from pipeline.models.standardize import InputStandardizer


@dataclass(frozen=True)
class PixelLSTMConfig:
    """Arguments of :class:`PixelLSTMClassifier` (saved with the weights).

    ``in_channels``: C; ``num_classes``: K; ``hidden``: LSTM units (paper: 256);
    ``num_layers``: stacked LSTM layers; ``dropout``: on the last hidden state.
    """

    in_channels: int
    num_classes: int
    hidden: int = 256
    num_layers: int = 1
    dropout: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class PixelLSTMClassifier(nn.Module):
    """LSTM over per-pixel sequences; accepts pixel batches or whole image windows."""

    def __init__(self, config: PixelLSTMConfig, *, chunk_pixels: int = 65536) -> None:
        super().__init__()
        self.config = config
        self.chunk_pixels = chunk_pixels
        self.standardize = InputStandardizer(config.in_channels)
        self.lstm = nn.LSTM(config.in_channels, config.hidden, config.num_layers, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, config.num_classes)

    def _classify(self, seq: Tensor) -> Tensor:
        z = self.standardize(seq, channel_dim=2)
        _, (h, _) = self.lstm(z)
        return self.head(self.dropout(h[-1]))

    def forward(self, x: Tensor) -> Tensor:
        """``x``: (N, T, C) pixel sequences -> logits (N, K); or (B, T, C, H, W) windows ->
        logits (B, K, H, W) (pixels processed in chunks of ``chunk_pixels``).
        Any float dtype, NaN/Inf where missing (set to 0 after standardisation)."""
        c = self.config.in_channels
        if x.dim() == 3 and x.shape[2] == c:
            return self._classify(x)
        if x.dim() == 5 and x.shape[2] == c:
            b, t, _, h, w = x.shape
            seq = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, t, c)
            parts = [self._classify(seq[i : i + self.chunk_pixels]) for i in range(0, seq.shape[0], self.chunk_pixels)]
            logits = torch.cat(parts, 0)
            return logits.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        raise ValueError(f"expected (N, T, {c}) or (B, T, {c}, H, W) features, got {tuple(x.shape)}")
