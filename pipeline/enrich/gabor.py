"""An offline stem: a deterministic (64, 3, 7, 7) filter bank of Gabor, blob and DoG filters.

Selected explicitly with ``stem: "gabor"`` when ImageNet weights cannot or should not be used;
it needs no download and is never substituted silently for a ResNet stem. It mimics what
ImageNet first layers learn (oriented edge/bar detectors on luminance, colour blobs and
colour-opponent centre-surround cells), with the first principal component playing the role
of luminance and components 2-3 the role of colour.

Layout of the 64 filters (input channel 0 = PC1, 1 = PC2, 2 = PC3; 7x7 taps on the grid
u, v in -3..3 pixels):

- 0..47: Gabor filters on PC1: 8 orientations (0, 22.5, ..., 157.5 degrees) x 3 scales
  (wavelength 2.5 / 4 / 6 px with Gaussian envelope sigma 1.0 / 1.5 / 2.0 px, aspect 0.8)
  x 2 phases (even = cosine, made zero-mean; odd = sine); index = ((scale * 8) + orientation)
  * 2 + phase.
- 48..50: Gaussian blobs (sigma 1.5 px) on PC1, PC2, PC3 (local mean, low-pass).
- 51..53: difference of Gaussians (centre sigma 0.8, surround sigma 2.0, zero-mean) on each PC.
- 54..57: Gabor on PC2, orientations 0 / 90 degrees, wavelength 4 px, even and odd phase.
- 58..61: the same on PC3.
- 62, 63: colour-opponent centre-surround: PC2 centre (sigma 0.8) minus PC3 surround
  (sigma 2.0), and PC3 centre minus PC2 surround.

Every filter is scaled to unit L2 norm over its 3 x 7 x 7 taps, so a white input of unit
variance gives responses of unit variance.
"""

from __future__ import annotations

import numpy as np

_HALF = 3
_ORIENTATIONS = 8
_SCALES: tuple[tuple[float, float], ...] = ((2.5, 1.0), (4.0, 1.5), (6.0, 2.0))
_ASPECT = 0.8


def _grid() -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(-_HALF, _HALF + 1, dtype=np.float64)
    v, u = np.meshgrid(r, r, indexing="ij")  # v: row (y), u: column (x)
    return u, v


def _gaussian(sigma: float) -> np.ndarray:
    u, v = _grid()
    g = np.exp(-(u**2 + v**2) / (2.0 * sigma**2))
    return g / g.sum()


def _gabor(theta: float, wavelength: float, sigma: float, *, odd: bool) -> np.ndarray:
    u, v = _grid()
    ur = u * np.cos(theta) + v * np.sin(theta)
    vr = -u * np.sin(theta) + v * np.cos(theta)
    envelope = np.exp(-(ur**2 + (_ASPECT * vr) ** 2) / (2.0 * sigma**2))
    phase = 2.0 * np.pi * ur / wavelength
    g = envelope * (np.sin(phase) if odd else np.cos(phase))
    return g - g.mean()  # zero DC: responds to structure, not to the local mean


def _dog(center: float = 0.8, surround: float = 2.0) -> np.ndarray:
    d = _gaussian(center) - _gaussian(surround)
    return d - d.mean()


def gabor_filter_bank() -> np.ndarray:
    """The 64 filters described in the module docstring: (64, 3, 7, 7) float32, unit L2 norm."""
    bank = np.zeros((64, 3, 7, 7), dtype=np.float64)
    i = 0
    for wavelength, sigma in _SCALES:
        for k in range(_ORIENTATIONS):
            theta = k * np.pi / _ORIENTATIONS
            for odd in (False, True):
                bank[i, 0] = _gabor(theta, wavelength, sigma, odd=odd)
                i += 1
    for c in range(3):
        bank[i, c] = _gaussian(1.5)
        i += 1
    for c in range(3):
        bank[i, c] = _dog()
        i += 1
    for c in (1, 2):
        for theta in (0.0, np.pi / 2):
            for odd in (False, True):
                bank[i, c] = _gabor(theta, 4.0, 1.5, odd=odd)
                i += 1
    bank[i, 1], bank[i, 2] = _gaussian(0.8), -_gaussian(2.0)
    bank[i + 1, 2], bank[i + 1, 1] = _gaussian(0.8), -_gaussian(2.0)
    i += 2
    assert i == 64
    norms = np.sqrt((bank**2).sum(axis=(1, 2, 3), keepdims=True))
    return (bank / norms).astype(np.float32)
