"""Building blocks shared by the UNet models (``unet.py``, ``unet_convlstm.py``) and their
receptive-field arithmetic (used by the prediction stage to size the tile halo).

Architecture (depth ``d``, width ``w``, kernel ``k``, ``n`` convolutions per block):

* encoder level 0: block(C -> w) at full resolution; level l = 1..d: 2x2 max-pool, then
  block(w 2^(l-1) -> w 2^l). Level ``d`` is the bottleneck (resolution / 2^d).
* decoder level l = d-1..0: 2x2 stride-2 transposed convolution (c_{l+1} -> c_l), concatenation
  with the level-l skip, block(2 c_l -> c_l).
* a block is ``n`` x (conv k x k, zero 'same' padding, BatchNorm, ReLU).

Inputs of any size are zero-padded at the bottom/right to a multiple of 2^d (after the input
standardisation, i.e. with the channel means) and the output is cropped back.

Receptive field (1-D, in input pixels; h = k // 2). After the encoder block of level l a cell
``c`` depends on input pixels ``[2^l c - A_l, 2^l c + 2^l - 1 + A_l]`` with
``A_l = n h (2^(l+1) - 1)``. A ConvLSTM of ``T`` steps and kernel ``k'`` at level l adds
``T (k' // 2) 2^l`` (one input and ``T - 1`` state convolutions). The transposed convolution
maps a level-l cell to level-(l+1) cell ``floor(c / 2)``, adding at most ``2^l``; the decoder
block adds ``n h 2^l``. So, with ``B_d`` the bottleneck radius,
``B_l = max(B_{l+1} + 2^l, skip_l) + n h 2^l`` and the output radius is ``B_0``; for a plain
UNet ``B_0 = n h (3 2^d - 2) + 2^d - 1``.

Max-pooling makes the network equivariant only to shifts by multiples of 2^d: tiled prediction
is exact (bit-for-bit up to float summation order) when tile origins and the halo are
multiples of 2^d and the halo is at least ``B_0`` (see :func:`aligned_halo`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def level_widths(width: int, depth: int) -> list[int]:
    """Channels per level 0..depth: ``width * 2^l``."""
    return [width * 2**level for level in range(depth + 1)]


class ConvBlock(nn.Sequential):
    """``convs`` x (conv ``kernel`` x ``kernel`` 'same' zero padding, BatchNorm, ReLU).

    Input (N, in_channels, H, W) float32 -> (N, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel: int = 3, convs: int = 2) -> None:
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd to keep the grid, got {kernel}")
        layers: list[nn.Module] = []
        for i in range(convs):
            layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, kernel,
                                 padding=kernel // 2, bias=False),
                       nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class UNetEncoder(nn.Module):
    """Encoder of levels 0..depth; ``forward`` returns the feature maps of every level,
    level l of shape (N, width 2^l, H / 2^l, W / 2^l) (H, W multiples of 2^depth)."""

    def __init__(self, in_channels: int, *, depth: int, width: int, kernel: int = 3, convs: int = 2) -> None:
        super().__init__()
        widths = level_widths(width, depth)
        self.blocks = nn.ModuleList(
            ConvBlock(in_channels if level == 0 else widths[level - 1], widths[level], kernel=kernel, convs=convs)
            for level in range(depth + 1)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        feats: list[Tensor] = []
        for level, block in enumerate(self.blocks):
            x = block(x if level == 0 else F.max_pool2d(x, 2))
            feats.append(x)
        return feats


class UNetDecoder(nn.Module):
    """Decoder: from the bottleneck (N, width 2^depth, H/2^d, W/2^d) and the skips of levels
    0..depth-1 back to (N, width, H, W)."""

    def __init__(self, *, depth: int, width: int, kernel: int = 3, convs: int = 2) -> None:
        super().__init__()
        widths = level_widths(width, depth)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(widths[lv + 1], widths[lv], 2, stride=2) for lv in range(depth))
        self.blocks = nn.ModuleList(ConvBlock(2 * widths[lv], widths[lv], kernel=kernel, convs=convs) for lv in range(depth))

    def forward(self, bottom: Tensor, skips: list[Tensor]) -> Tensor:
        x = bottom
        for level in reversed(range(len(self.blocks))):
            x = self.blocks[level](torch.cat([self.ups[level](x), skips[level]], dim=1))
        return x


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Zero-pad the last two dims of ``x`` (..., H, W) at the bottom/right up to multiples of
    ``multiple``; crop back with ``y[..., :H, :W]``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph))


def unet_receptive_radius(depth: int, kernel: int, *, convs: int = 2, bottleneck_steps: int = 0,
                          skip_steps: int = 0, lstm_kernel: int | None = None) -> int:
    """Receptive-field radius in input pixels of the UNet of this module (formula above).

    ``bottleneck_steps``/``skip_steps``: time steps of a ConvLSTM at the bottleneck / on every
    skip (0 = none); ``lstm_kernel``: its kernel (default ``kernel``).
    """
    h = kernel // 2
    hl = (kernel if lstm_kernel is None else lstm_kernel) // 2
    enc = [convs * h * (2 ** (level + 1) - 1) for level in range(depth + 1)]
    radius = enc[depth] + bottleneck_steps * hl * 2**depth
    for level in reversed(range(depth)):
        skip = enc[level] + skip_steps * hl * 2**level
        radius = max(radius + 2**level, skip) + convs * h * 2**level
    return radius


def aligned_halo(radius: int, depth: int) -> int:
    """Smallest multiple of 2^depth that is >= ``radius`` (the halo for exact tiling)."""
    step = 2**depth
    return int(math.ceil(radius / step) * step)
