"""Bit-exactness of the stem's fast upsampling (strided slices) against the gather implementation.

The gather implementation below is the chunk-exact :func:`pipeline.enrich.stem.stem_window` as it
was before the strided fast path (kept here verbatim as the reference): per-pixel source indices
and weights from :func:`pipeline.enrich.stem.bilinear_source`, gathered and blended with
``torch.lerp``, columns first. The new path must give the same float32 bits for every window,
and the feature stage the same float16 bits for every chunking (odd sizes and nodata included)
as the reference run on the whole image in one window.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr

from pipeline.enrich import FeatureOptions, build_features, gabor_filter_bank
from pipeline.enrich.stem import (
    HALO,
    PADDING,
    STRIDE,
    _runs,
    bilinear_source,
    stem_window,
)


def _reference_window(z, weight, *, origin, core, image_shape):
    """The gather implementation (before the fast path), float32."""
    gy0, gx0 = origin
    py, px = gy0 % 2, gx0 % 2
    zz = z[:, py:, px:]
    conv = F.conv2d(zz[None], weight, stride=STRIDE, padding=PADDING)[0]
    y0, y1, x0, x1 = core

    def axis(start, stop, size, base):
        i0, i1, lam = bilinear_source(start, stop, size=size)
        return torch.from_numpy(i0 - base), torch.from_numpy(i1 - base), torch.from_numpy(lam)

    r0, r1, rl = axis(y0, y1, image_shape[0], (gy0 + py) // 2)
    c0, c1, cl = axis(x0, x1, image_shape[1], (gx0 + px) // 2)
    out = torch.empty((conv.shape[0], y1 - y0, x1 - x0), dtype=conv.dtype)
    for g in range(0, conv.shape[0], 16):
        part = conv[g : g + 16]
        part = torch.lerp(part[:, :, c0], part[:, :, c1], cl)
        out[g : g + 16] = torch.lerp(part[:, r0], part[:, r1], rl[:, None])
    return out


def _padded(z_img, y0, y1, x0, x1):
    """Window [y0 - HALO, y1 + HALO) x [x0 - HALO, x1 + HALO) of z_img, zeros outside."""
    k, h, w = z_img.shape
    win = torch.zeros((k, y1 - y0 + 2 * HALO, x1 - x0 + 2 * HALO))
    ys, xs = max(y0 - HALO, 0), max(x0 - HALO, 0)
    ye, xe = min(y1 + HALO, h), min(x1 + HALO, w)
    win[:, ys - (y0 - HALO) : ye - (y0 - HALO), xs - (x0 - HALO) : xe - (x0 - HALO)] = z_img[:, ys:ye, xs:xe]
    return win


@pytest.mark.parametrize("shape", [(64, 96), (66, 50), (65, 64), (63, 71)])
def test_fast_stem_window_equals_gathers_bit_for_bit(shape):
    h, w = shape
    gen = torch.Generator().manual_seed(h * 1000 + w)
    z_img = torch.randn((3, h, w), generator=gen)
    weight = torch.from_numpy(gabor_filter_bank())
    for y0, y1, x0, x1 in [(0, h, 0, w), (0, 17, 0, 20), (17, 40, 21, w), (1, h - 1, 3, 38), (30, h, 0, 9)]:
        win = _padded(z_img, y0, y1, x0, x1)
        kw = {"origin": (y0 - HALO, x0 - HALO), "core": (y0, y1, x0, x1), "image_shape": (h, w)}
        got = stem_window(win, weight, **kw)
        ref = _reference_window(win, weight, **kw)
        assert got.dtype == torch.float32
        assert torch.equal(got, ref), (shape, (y0, y1, x0, x1))
    # the fast path runs where both sides are even, the gathers elsewhere
    fast = _runs(*bilinear_source(0, h, size=h)) is not None and _runs(*bilinear_source(0, w, size=w)) is not None
    assert fast == (h % 2 == 0 and w % 2 == 0)


def test_runs_cover_an_even_axis_with_few_slices_and_odd_axes_fall_back():
    i0, i1, lam = bilinear_source(0, 64, size=64)
    runs = _runs(i0, i1, lam)
    assert runs is not None and len(runs) <= 4  # first pixel, even interior, odd interior, last pixel
    covered = np.concatenate([np.arange(64)[d] for d, *_ in runs])
    assert np.array_equal(np.sort(covered), np.arange(64))
    for d, s0, s1, lw in runs:
        assert np.array_equal(i0[d], np.arange(s0.start, s0.stop)) and np.array_equal(i1[d], np.arange(s1.start, s1.stop))
        assert np.all(lam[d] == np.float32(lw))
    assert _runs(*bilinear_source(0, 63, size=63)) is None


def _cube(h, w, n_t=2, seed=3):
    rng = np.random.default_rng(seed)
    refl = rng.uniform(0, 0.5, (n_t, 4, h, w)).astype(np.float32)
    refl += np.linspace(0, 0.2, w, dtype=np.float32)  # some structure for the PCA
    valid = rng.uniform(size=(n_t, h, w)) > 0.15
    refl[0, 2, 5:9, 7:20] = np.nan  # nodata inside a valid mask
    valid[1, : h // 3, : w // 4] = False  # a nodata corner
    return xr.Dataset(
        {"reflectance": (("time", "band", "y", "x"), refl), "valid": (("time", "y", "x"), valid)},
        coords={"time": np.array(["2021-01-01", "2021-02-01"][:n_t], dtype="datetime64[ns]"),
                "band": ["blue", "green", "red", "nir08"][:4],
                "y": 1000.0 - 30.0 * np.arange(h), "x": 30.0 * np.arange(w)},
        attrs={"crs": "EPSG:32649", "transform": [30.0, 0.0, 0.0, 0.0, -30.0, 1000.0]},
    )


@pytest.mark.parametrize("shape", [(96, 80), (75, 61)])
def test_features_equal_whole_image_reference_for_every_chunking(shape, monkeypatch):
    """build_features at chunk 16, 24, 37 (odd) and whole-image equals, to the bit, the gather
    reference run on the whole image in one window with the same PCA."""
    h, w = shape
    cube = _cube(h, w)
    weight = torch.from_numpy(gabor_filter_bank())
    outs = {}
    for chunk in (16, 24, 37, max(h, w)):
        ds = build_features(cube, FeatureOptions(stem="gabor", chunk=chunk, pca_sample=500, device="cpu"))
        outs[chunk] = ds.compute()
    ref_ds = outs[max(h, w)]
    fit_mean = np.asarray(ref_ds.attrs["features_pca_mean"], np.float64)[0]
    comps = np.asarray(ref_ds.attrs["features_pca_components"], np.float64)[0]
    std = np.asarray(ref_ds.attrs["features_pca_std"], np.float64)[0]
    scaled = torch.from_numpy((comps / std[:, None]).astype(np.float32))
    mean = torch.from_numpy(fit_mean.astype(np.float32))
    refl = cube["reflectance"].values
    ok = cube["valid"].values & np.isfinite(refl).all(axis=1)
    for t in range(refl.shape[0]):
        x = torch.from_numpy(refl[t])
        z = torch.einsum("kb,byx->kyx", scaled, x - mean[:, None, None])
        z = torch.where(torch.from_numpy(ok[t])[None], z, torch.zeros(()))
        win = _padded(z, 0, h, 0, w)
        ref = _reference_window(win, weight, origin=(-HALO, -HALO), core=(0, h, 0, w), image_shape=(h, w))
        ref16 = ref.to(torch.float16).numpy()
        for chunk, ds in outs.items():
            got = ds["features"].values[t, :64]
            assert got.dtype == np.float16
            assert np.array_equal(got.view(np.uint16), ref16.view(np.uint16)), (shape, chunk, t)
    for chunk, ds in outs.items():
        assert np.array_equal(ds["features"].values.view(np.uint16), ref_ds["features"].values.view(np.uint16)), chunk
        assert np.array_equal(ds["valid"].values, ref_ds["valid"].values)
        assert ds.attrs["features_pca_mean"] == ref_ds.attrs["features_pca_mean"]
