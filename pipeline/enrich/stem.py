"""The stem of paper eq. 1: ResNet first convolution, then bilinear upsampling to (h, w).

``F_up(ResNet^1(z))``: a 7x7 convolution, stride 2, zero padding 3, no bias (ResNet's
``conv1``), then bilinear upsampling back to the input size with
``torch.nn.functional.interpolate(size=(h, w), mode="bilinear", align_corners=False)``.

Only the convolution is applied - no batch norm, no ReLU. Reasons: (1) the paper takes "the
feature map after the first convolutional layer" (ResNet^1 = the first convolutional layer);
(2) the reference weights (``resnet18_imagenet_conv1.npz``) hold ``conv1.weight`` and only
``bn1.bias``, without BN scale and running statistics, so BN could not be reproduced from them
and features would depend on where the weights came from; (3) eval-mode BN is a fixed
per-channel affine map that the downstream network's first (linear) convolution can absorb,
whereas a ReLU would discard the negative half of these mostly zero-mean edge / colour-opponent
responses - information - before a model that has its own non-linearities.

Pixel alignment: the stride-2 output ``o[i]`` is centred on input pixel ``2 i`` (taps
``2i-3 .. 2i+3``), ``ceil(h/2)`` rows. ``interpolate(align_corners=False)`` maps output row
``y`` to the source coordinate ``s = max((y + 0.5) * ceil(h/2) / h - 0.5, 0)`` of the
stride-2 grid, i.e. it assumes ``o[i]`` sits at input position ``2 i + 0.5``. For even ``h``
the feature at pixel ``y`` is therefore the stem response at input position ``y - 0.5``
(half a pixel, 15 m for Landsat, up / left of the pixel centre; the first row/column uses
``o[0]``, centred on pixel 0). For odd ``h`` the scale ``ceil(h/2) / h`` is slightly above
1/2 and the offset ``(y + 0.5) / h - 0.5`` px grows from about -0.5 px at the top to about
+0.5 px at the bottom. We keep this torch-standard behaviour (the paper's ``F_up``) rather
than re-centring; the same holds for columns.

Chunked computation (:func:`stem_window`) reproduces the unchunked :func:`stem_dense`
exactly: a window with a halo of :data:`HALO` (even) pixels around its core, zeros outside
the image, is convolved at the global stride-2 phase (a window starting on an odd global row
drops its first row) and the upsampling uses the global source coordinates above. For an even
image side those coordinates repeat with period 2, so the upsampling runs on strided slices of
the window's convolution (views, no gathers; :func:`_runs`); for an odd side it gathers with
per-pixel weights. Both paths give the same bits (same ``torch.lerp`` on the same operands,
columns first); ``tests/test_enrich_stem_exact.py`` checks them against the gather
implementation. ``F.interpolate`` itself is not used on windows: it rounds differently
(``(1 - l) a + l b`` in one step instead of ``lerp``), which would change about a third of the
float32 values by an ulp.

Arrays are torch tensors, float32, on any device; the stem input ``z`` is the standardised
PCA image (0 where invalid, see :mod:`pipeline.enrich.pca`).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.errors import FeatureError

#: Halo (pixels) around a chunk. Output row y blends stride-2 samples i0 = floor(~y/2 - 1/4)
#: and i0 + 1, whose 7 taps reach input rows y - 6 .. y + 6 at most (odd sizes included);
#: a window starting on an odd row drops one more row for the stride-2 phase: 7, rounded
#: up to an even number (keeps chunk origins and halo on the same phase). Checked at run
#: time by ``_axis_weights``.
HALO = 8
KERNEL = 7
STRIDE = 2
PADDING = 3
_GROUP = 16  # channels upsampled at a time (gather path)
_MAX_RUNS = 8  # slice runs per axis before falling back to gathers (odd image sides)


def stem_dense(z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Unchunked reference: conv (stride 2, padding 3) + bilinear upsampling to the input size.

    Args:
        z: (n, k, h, w) float32 stem input (standardised principal components).
        weight: (64, k, 7, 7) float32 stem kernel.

    Returns:
        (n, 64, h, w) float32.
    """
    out = F.conv2d(z, weight, stride=STRIDE, padding=PADDING)
    return F.interpolate(out, size=z.shape[-2:], mode="bilinear", align_corners=False)


def bilinear_source(
    start: int, stop: int, *, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices/weights of output rows ``[start, stop)`` of the upsampling to ``size``.

    Follows torch's ``align_corners=False`` rule from ``ceil(size/2)`` stride-2 samples.
    Returns ``(i0, i1, lam)``: global stride-2 indices (int64) and the weight of ``i1``
    (float32), so ``out[y] = (1 - lam) * o[i0] + lam * o[i1]``.
    """
    n_in = (size + 1) // 2
    scale = np.float32(n_in / size)
    dst = np.arange(start, stop, dtype=np.float32)
    src = np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = (src - i0).astype(np.float32)
    return i0, i1, lam


def stem_window(
    z: torch.Tensor,
    weight: torch.Tensor,
    *,
    origin: tuple[int, int],
    core: tuple[int, int, int, int],
    image_shape: tuple[int, int],
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Stem features of the core of a window, equal to :func:`stem_dense` on the whole image.

    Args:
        z: (k, wh, ww) float32 stem input of the window; pixels outside the image must be 0.
        weight: (64, k, 7, 7) float32 stem kernel.
        origin: global (row, col) of ``z[:, 0, 0]`` (negative inside the top/left padding).
        core: global ``(y0, y1, x0, x1)`` of the rows/cols to return, inside the window with
            enough halo (:data:`HALO` on each side suffices).
        image_shape: global (h, w) of the whole image.
        out: optional (64, y1 - y0, x1 - x0) tensor (any float dtype, ``z``'s device) to
            write into; upsampling runs in groups of channels to bound the temporaries.

    Returns:
        (64, y1 - y0, x1 - x0), float32 or ``out``.
    """
    gy0, gx0 = origin
    py, px = gy0 % 2, gx0 % 2  # drop a row/col so that conv centres fall on even global pixels
    zz = z[:, py:, px:]
    conv = F.conv2d(zz[None], weight, stride=STRIDE, padding=PADDING)[0]
    y0, y1, x0, x1 = core
    rows = _axis_weights(y0, y1, size=image_shape[0], base=(gy0 + py) // 2, length=zz.shape[1])
    cols = _axis_weights(x0, x1, size=image_shape[1], base=(gx0 + px) // 2, length=zz.shape[2])
    if out is None:
        out = torch.empty((conv.shape[0], y1 - y0, x1 - x0), dtype=conv.dtype, device=conv.device)
    row_runs, col_runs = _runs(*rows), _runs(*cols)
    if row_runs is None or col_runs is None:  # odd image side: the weights vary pixel by pixel
        return _upsample_gather(conv, rows, cols, out)
    part = torch.empty((conv.shape[0], conv.shape[1], x1 - x0), dtype=conv.dtype, device=conv.device)
    for dst, s0, s1, lam in col_runs:  # columns first: fewer rows (the order fixes the rounding)
        torch.lerp(conv[:, :, s0], conv[:, :, s1], lam, out=part[:, :, dst])
    for dst, s0, s1, lam in row_runs:
        if out.dtype == part.dtype:
            torch.lerp(part[:, s0], part[:, s1], lam, out=out[:, dst])
        else:  # float32 result rounded once to the stored dtype, as the gathers do
            out[:, dst] = torch.lerp(part[:, s0], part[:, s1], lam)
    return out


def _upsample_gather(
    conv: torch.Tensor, rows: tuple[np.ndarray, ...], cols: tuple[np.ndarray, ...], out: torch.Tensor
) -> torch.Tensor:
    """Bilinear upsampling of ``conv`` (64, n, m) by gathers with per-pixel weights ``rows`` /
    ``cols`` (local ``(k0, k1, lam)`` of :func:`_axis_weights`) into ``out``: the general path."""
    dev = conv.device
    r0, r1, rl = (torch.from_numpy(a).to(dev) for a in rows)
    c0, c1, cl = (torch.from_numpy(a).to(dev) for a in cols)
    for g in range(0, conv.shape[0], _GROUP):
        part = conv[g : g + _GROUP]
        part = torch.lerp(part[:, :, c0], part[:, :, c1], cl)  # columns first: fewer rows
        out[g : g + _GROUP] = torch.lerp(part[:, r0], part[:, r1], rl[:, None])
    return out


def _runs(
    k0: np.ndarray, k1: np.ndarray, lam: np.ndarray
) -> list[tuple[slice, slice, slice, float]] | None:
    """The upsampling of one axis as a few strided slices instead of gathers, or None.

    For an even image side the weights repeat with period 2 (0.75 on even output pixels, 0.25 on
    odd ones; 0 on the first pixel, a clamped source on the last): the output pixels of one
    parity form runs ``dst = start::2`` whose sources ``k0``, ``k1`` advance by one and whose
    weight is constant, so ``out[dst] = lerp(o[s0], o[s1], lam)`` on slices (views) gives the
    same numbers to the bit as the gathers (same ``torch.lerp``, same operands). Returns
    ``(dst, s0, s1, lam)`` per run, or None when there are more than :data:`_MAX_RUNS` (odd
    sides, where the weight changes at every pixel).
    """
    runs: list[tuple[slice, slice, slice, float]] = []
    for phase in (0, 1):
        idx = np.arange(phase, len(k0), 2)
        if idx.size == 0:
            continue
        brk = (np.diff(k0[idx]) != 1) | (np.diff(k1[idx]) != 1) | (np.diff(lam[idx]) != 0)
        bounds = np.concatenate([[0], np.flatnonzero(brk) + 1, [idx.size]])
        if len(bounds) - 1 + len(runs) > _MAX_RUNS:
            return None
        for a, b in itertools.pairwise(bounds):
            i, n = int(idx[a]), int(b - a)
            runs.append((slice(i, i + 2 * n - 1, 2), slice(int(k0[i]), int(k0[i]) + n),
                         slice(int(k1[i]), int(k1[i]) + n), float(lam[i])))
    return runs


def _axis_weights(
    start: int, stop: int, *, size: int, base: int, length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local stride-2 indices into a window's conv output; checks the halo was enough."""
    i0, i1, lam = bilinear_source(start, stop, size=size)
    k0, k1 = i0 - base, i1 - base
    # local sample k is exact only if its 7 taps 2k-3..2k+3 lie inside the window
    lo, hi = (PADDING + 1) // 2, (length - 1 - PADDING) // 2
    if k0.min() < lo or k1.max() > hi:
        raise FeatureError(
            f"stem window halo too small for rows {start}..{stop} (local samples "
            f"{k0.min()}..{k1.max()} outside {lo}..{hi}); this is a bug - report it"
        )
    return k0, k1, lam
