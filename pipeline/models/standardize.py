"""Per-channel input standardisation carried inside a model (so inference needs no side file)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class InputStandardizer(nn.Module):
    """``(x - mean) / std`` per channel, then every non-finite value set to 0.

    The mean/std buffers (shape (channels,), float32, units of the features) are filled by the
    training code from the training data and saved with the weights. Non-finite inputs
    (NaN nodata, +-Inf from float16 overflow) become 0 *after* standardisation, i.e. the
    channel mean: this is the masking rule for missing observations of the whole package.
    """

    channel_mean: Tensor
    channel_std: Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("channel_mean", torch.zeros(channels))
        self.register_buffer("channel_std", torch.ones(channels))

    def set_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Store per-channel ``mean``/``std`` (shape (channels,), any float dtype)."""
        if mean.shape != self.channel_mean.shape or std.shape != self.channel_std.shape:
            raise ValueError(f"statistics must have shape {tuple(self.channel_mean.shape)}")
        self.channel_mean.copy_(mean.to(self.channel_mean))
        self.channel_std.copy_(std.to(self.channel_std).clamp_min(1e-6))

    def forward(self, x: Tensor, *, channel_dim: int) -> Tensor:
        """Standardise ``x`` (any float dtype, channels on ``channel_dim``); returns float32."""
        shape = [1] * x.dim()
        shape[channel_dim] = -1
        mean = self.channel_mean.view(shape)
        std = self.channel_std.view(shape)
        # x * (1/std) - mean/std in one pass and one new tensor, then in place (x is never
        # modified): windows are large and every pass over them counts (bench/README.md)
        x = x if x.dtype in (torch.float16, torch.bfloat16, torch.float32) else x.float()
        z = torch.addcmul(-mean / std, x, std.reciprocal())  # float16 / bfloat16 promote to float32
        return z.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
