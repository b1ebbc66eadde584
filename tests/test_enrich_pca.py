"""PCA of the feature stage: valid pixels only, seeded chunk-independent sample, global vs
per-date fits, standardisation, options parsing."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from pipeline.enrich import FeatureOptions
from pipeline.enrich.pca import fit_pca, sample_valid_pixels, splitmix_keys
from pipeline.errors import ConfigError, FeatureError


def _data(t: int = 3, h: int = 30, w: int = 34, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(time, 7, y, x) float32 reflectance with a per-date band structure + a valid mask."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((t, 3, h, w))
    refl = np.empty((t, 7, h, w), np.float32)
    for d in range(t):
        mix = rng.standard_normal((7, 3)) * np.array([3.0, 1.0, 0.3])  # 3 decreasing components
        mix[:, 0] *= 1 + 2 * d  # dates differ in variance and loadings
        refl[d] = 0.1 * (np.einsum("bc,cyx->byx", mix, latent[d]) + 0.02 * rng.standard_normal((7, h, w))) + 0.2
    valid = rng.random((t, h, w)) > 0.2
    return refl, valid


def _fit(refl: np.ndarray, valid: np.ndarray, *, chunk: int = 16, **kw: object):  # type: ignore[no-untyped-def]
    r = da.from_array(refl, chunks=(1, -1, chunk, chunk))
    ok = da.from_array(valid, chunks=(1, chunk, chunk)) & da.isfinite(r).all(axis=1)
    params = {"n_components": 3, "mode": "global", "sample": 200_000, "seed": 0} | kw
    return fit_pca(r, ok, **params)  # type: ignore[arg-type]


def _svd_reference(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Independent PCA: eigen-decomposition of the covariance (ddof=1), sign rule applied."""
    mean = x.mean(axis=0)
    cov = np.cov(x - mean, rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:k]
    comps = vecs[:, order].T
    comps *= np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])[:, None]
    return mean, comps, np.sqrt(vals[order])


def test_global_fit_equals_covariance_eigenvectors_of_valid_pixels() -> None:
    refl, valid = _data()
    fit = _fit(refl, valid)  # sample (200000) > valid pixels: every valid pixel is used
    x = refl.transpose(0, 2, 3, 1)[valid].astype(np.float64)
    mean, comps, std = _svd_reference(x, 3)
    np.testing.assert_allclose(fit.mean[0], mean, rtol=1e-9)
    np.testing.assert_allclose(fit.components[0], comps, atol=1e-8)
    np.testing.assert_allclose(fit.std[0], std, rtol=1e-8)
    assert int(fit.n_samples[0]) == len(x)
    # global: the same components on every date
    for t in range(1, 3):
        np.testing.assert_array_equal(fit.components[t], fit.components[0])
    # standardised components: mean 0, std 1 over the fitted pixels
    scaled, m = fit.projection(1)
    z = (x - m) @ scaled.T.astype(np.float64)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=0, ddof=1), 1.0, rtol=1e-4)


def test_invalid_pixels_do_not_change_the_fit() -> None:
    refl, valid = _data()
    clean = _fit(refl, valid, sample=2000)
    dirty = refl.copy()
    for t in range(refl.shape[0]):
        dirty[t][:, ~valid[t]] = np.where(np.arange(7)[:, None] % 2 == 0, 1e6, -1e6)
    dirty[0, 3, ~valid[0]] = np.nan  # and NaN in one band of invalid pixels
    # a valid-flagged pixel with a NaN band is not used either
    vflag = valid.copy()
    y, x = np.argwhere(~valid[1])[0]
    vflag[1, y, x] = True
    dirty[1, 4, y, x] = np.nan
    noisy = _fit(dirty, vflag, sample=2000)
    for name in ("mean", "components", "std", "n_samples"):
        np.testing.assert_array_equal(getattr(noisy, name), getattr(clean, name))
    # the test can fail: treating the extreme pixels as valid changes everything
    wrong = _fit(np.nan_to_num(dirty), np.ones_like(valid), sample=2000)
    assert np.abs(wrong.mean[0] - clean.mean[0]).max() > 1e3


def test_sample_is_seeded_sized_and_chunk_independent() -> None:
    refl, valid = _data(t=2, h=40, w=40)
    n_valid = int(valid.sum())
    outs = []
    for chunk in (40, 16, 13):
        r = da.from_array(refl, chunks=(1, -1, chunk, chunk))
        ok = da.from_array(valid, chunks=(1, chunk, chunk))
        outs.append(sample_valid_pixels(r, ok, n=600, seed=7, per_date=False))
    for dates, values, counts in outs[1:]:
        np.testing.assert_array_equal(values, outs[0][1])
        np.testing.assert_array_equal(dates, outs[0][0])
    dates, values, counts = outs[0]
    assert counts.tolist() == valid.sum(axis=(1, 2)).tolist()
    assert 450 < len(values) < 750  # Bernoulli(600 / n_valid) sample of n_valid pixels
    assert len(values) < n_valid
    # every sampled row is a valid pixel's reflectance
    pool = {tuple(v) for v in refl.transpose(0, 2, 3, 1)[valid].astype(np.float64)}
    assert all(tuple(v) in pool for v in values[:50])
    r = da.from_array(refl, chunks=(1, -1, 40, 40))
    other = sample_valid_pixels(r, da.from_array(valid, chunks=(1, 40, 40)), n=600, seed=8, per_date=False)
    assert not np.array_equal(other[1][:20], values[:20])  # the seed matters
    per = sample_valid_pixels(r, da.from_array(valid, chunks=(1, 40, 40)), n=300, seed=7, per_date=True)
    per_counts = np.bincount(per[0], minlength=2)
    assert all(200 < c < 400 for c in per_counts)


def test_splitmix_keys_uniform_and_deterministic() -> None:
    idx = np.arange(100_000, dtype=np.uint64)
    k1, k2 = splitmix_keys(idx, 3), splitmix_keys(idx, 3)
    np.testing.assert_array_equal(k1, k2)
    assert 0.0 <= k1.min() and k1.max() < 1.0
    hist = np.histogram(k1, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(hist - 10_000) < 500)
    assert np.corrcoef(k1[:-1], k1[1:])[0, 1] < 0.02


def test_per_date_differs_from_global_and_matches_each_date() -> None:
    refl, valid = _data()
    glob = _fit(refl, valid, mode="global")
    per = _fit(refl, valid, mode="per_date")
    for t in range(3):
        x = refl[t].transpose(1, 2, 0)[valid[t]].astype(np.float64)
        mean, comps, std = _svd_reference(x, 3)
        np.testing.assert_allclose(per.mean[t], mean, rtol=1e-9)
        np.testing.assert_allclose(per.components[t], comps, atol=1e-8)
        np.testing.assert_allclose(per.std[t], std, rtol=1e-8)
    assert np.abs(per.components[0] - per.components[2]).max() > 0.1
    assert np.abs(per.std[2] - glob.std[2]).max() > 0.01
    assert per.fallback_dates == ()
    attrs = per.attrs()
    assert len(attrs["pca_components"]) == 3 and len(glob.attrs()["pca_components"]) == 1


def test_per_date_without_valid_pixels_uses_global_fit(caplog: pytest.LogCaptureFixture) -> None:
    refl, valid = _data()
    valid[1] = False
    glob = _fit(refl, valid, mode="global")
    per = _fit(refl, valid, mode="per_date")
    assert per.fallback_dates == (1,)
    np.testing.assert_allclose(per.components[1], glob.components[1], atol=1e-10)
    assert "use the global PCA" in caplog.text


def test_no_valid_pixel_is_a_clear_error() -> None:
    refl, valid = _data(t=1)
    with pytest.raises(FeatureError, match="valid pixels"):
        _fit(refl, np.zeros_like(valid))


def test_options_parsing_and_errors() -> None:
    assert FeatureOptions.from_json("") == FeatureOptions()
    o = FeatureOptions.from_json('{"pca_mode": "per_date", "chunk": 33, "stem": "gabor", "dtype": "float32"}')
    assert (o.pca_mode, o.chunk, o.stem, o.dtype, o.pca_components) == ("per_date", 33, "gabor", "float32", 3)
    with pytest.raises(ConfigError, match=r"unknown features option\(s\) \['pca'\]"):
        FeatureOptions.from_json('{"pca": 3}')
    with pytest.raises(ConfigError, match="'pca_mode' must be one of"):
        FeatureOptions.from_json('{"pca_mode": "local"}')
    with pytest.raises(ConfigError, match="'chunk' must be an integer >= 16"):
        FeatureOptions.from_json('{"chunk": 8}')
    with pytest.raises(ConfigError, match="'pca_components'"):
        FeatureOptions.from_json('{"pca_components": true}')
    with pytest.raises(ConfigError, match="'device'"):
        FeatureOptions.from_json('{"device": "tpu"}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        FeatureOptions.from_json("{stem: resnet18}")
    with pytest.raises(ConfigError, match="JSON object"):
        FeatureOptions.from_json("[1, 2]")


def _two_pass_sample(refl: np.ndarray, valid: np.ndarray, *, n: int, seed: int, per_date: bool):  # type: ignore[no-untyped-def]
    """The sample as drawn before the single pass, on the whole arrays in numpy: count the valid
    pixels, then keep those whose splitmix key is below p (module docstring), by position."""
    n_t, _, h, w = refl.shape
    n_valid = valid.sum(axis=(1, 2)).astype(np.int64)
    prob = np.minimum(1.0, n / np.maximum(n_valid, 1)) if per_date else np.full(n_t, min(1.0, n / max(int(n_valid.sum()), 1)))
    t, yy, xx = np.nonzero(valid)
    linear = (t.astype(np.uint64) * np.uint64(h) + yy.astype(np.uint64)) * np.uint64(w) + xx.astype(np.uint64)
    keep = splitmix_keys(linear, seed) < prob[t]
    return t[keep].astype(np.int64), refl[t[keep], :, yy[keep], xx[keep]].astype(np.float64), n_valid


@pytest.mark.parametrize("per_date", [False, True])
def test_single_pass_sample_equals_count_then_sample(per_date: bool) -> None:
    """Same sample (positions, values, order) as counting first, also where some blocks hold far
    more valid pixels than the rest (they are read again) and with odd chunks / dates without
    valid pixels."""
    refl, valid = _data(t=3, h=60, w=50)
    skewed = valid.copy()
    skewed[0, :, 10:] = False  # date 0: valid only in the first columns -> blocks there re-read
    skewed[2] = False  # a date without valid pixels
    for mask in (valid, skewed):
        for n in (40, 700, 5000):
            ref = _two_pass_sample(refl, mask, n=n, seed=5, per_date=per_date)
            for chunk in (60, 16, 11):
                r = da.from_array(refl, chunks=(1, -1, chunk, chunk))
                ok = da.from_array(mask, chunks=(1, chunk, chunk))
                got = sample_valid_pixels(r, ok, n=n, seed=5, per_date=per_date)
                for a, b in zip(got, ref):
                    np.testing.assert_array_equal(a, b)
