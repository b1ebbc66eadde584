"""PCA of the reflectance bands down to the stem's input channels (paper section 2.1).

Fitting uses valid pixels only (``valid`` and every band finite), from a seeded random sample:
each pixel ``(t, y, x)`` gets a key ``u`` in [0, 1) from a 64-bit hash (splitmix64) of its
global position and the seed, and is kept when ``u < p`` with ``p = pca_sample / n_valid``
(per date in ``per_date`` mode). The sample does not depend on the chunking, is sorted by
position, and is gathered chunk by chunk in one pass over the cube that also counts the valid
pixels (bounded memory: about 4x the sample; :func:`sample_valid_pixels`). PCA is scikit-learn's ``PCA(svd_solver="full")`` on
float64 samples.

Sign: each component is flipped so that its largest-magnitude loading is positive.

Scaling to what ImageNet filters expect: torchvision ResNets see images normalised per channel
as ``(rgb - imagenet_mean) / imagenet_std``, i.e. inputs with mean 0 and standard deviation 1
over the ImageNet images (range about -2.1..2.6). Component ``j`` is therefore standardised by
its sample standard deviation::

    z_j = ((x - mean) . components_j) / std_j,  std_j = sqrt(explained_variance_j) (ddof=1)

giving mean 0 and std 1 over the sampled valid pixels; no clipping (a linear map keeps the
stem linear in the reflectance). PC1 feeds the stem's R input, PC2 G, PC3 B. Invalid pixels
get ``z = 0`` (the mean). A component with zero variance gets ``z = 0`` everywhere.

``per_date`` mode fits one PCA per date; a date with fewer than :data:`MIN_DATE_SAMPLES`
sampled valid pixels uses the global fit (logged as a warning and listed in the attrs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np

from pipeline.enrich.options import PcaMode
from pipeline.errors import FeatureError

log = logging.getLogger(__name__)

MIN_DATE_SAMPLES = 50
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_OVERSAMPLE = 4  # candidates kept per block in the single pass, in units of its share of n


@dataclass(frozen=True)
class PcaFit:
    """Per-date projection to standardised components.

    Attributes:
        mean: (time, band) float64 band means subtracted before projecting (reflectance units).
        components: (time, k, band) float64 unit loading vectors (sign-fixed).
        std: (time, k) float64 sample std of each component over the fitted pixels.
        explained_variance_ratio: (time, k) float64.
        n_samples: (time,) int64 pixels the date's fit used.
        fallback_dates: indices of dates that use the global fit in ``per_date`` mode.
        mode: ``"global"`` or ``"per_date"``.
    """

    mean: np.ndarray
    components: np.ndarray
    std: np.ndarray
    explained_variance_ratio: np.ndarray
    n_samples: np.ndarray
    fallback_dates: tuple[int, ...]
    mode: PcaMode

    def projection(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scaled, mean)`` of date ``t`` with ``z = scaled @ (x - mean)``.

        ``scaled`` (k, band) float32 = components / std (0 for a zero-variance component),
        ``mean`` (band,) float32 in reflectance units.
        """
        std = self.std[t]
        inv = np.divide(1.0, std, out=np.zeros_like(std), where=std > 1e-12)
        scaled = (self.components[t] * inv[:, None]).astype(np.float32)
        return scaled, self.mean[t].astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Lossless JSON form (every date; floats round-trip exactly through ``json``)."""
        return {"mode": self.mode, "mean": self.mean.tolist(), "components": self.components.tolist(),
                "std": self.std.tolist(), "explained_variance_ratio": self.explained_variance_ratio.tolist(),
                "n_samples": self.n_samples.tolist(), "fallback_dates": list(self.fallback_dates)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PcaFit:
        """Inverse of :meth:`to_dict`."""
        f64 = np.float64
        return cls(np.asarray(d["mean"], f64), np.asarray(d["components"], f64), np.asarray(d["std"], f64),
                   np.asarray(d["explained_variance_ratio"], f64), np.asarray(d["n_samples"], np.int64),
                   tuple(int(t) for t in d["fallback_dates"]), d["mode"])

    def attrs(self) -> dict[str, Any]:
        """JSON-serialisable description for the store attrs (one entry when global)."""
        sl = slice(0, 1) if self.mode == "global" else slice(None)
        return {
            "pca_mean": self.mean[sl].tolist(),
            "pca_components": self.components[sl].tolist(),
            "pca_std": self.std[sl].tolist(),
            "pca_explained_variance_ratio": self.explained_variance_ratio[sl].tolist(),
            "pca_n_samples": self.n_samples[sl].tolist(),
            "pca_fallback_dates": list(self.fallback_dates),
        }


def splitmix_keys(linear: np.ndarray, seed: int) -> np.ndarray:
    """Uniform keys in [0, 1) (float64) from uint64 positions and a seed (splitmix64 finaliser)."""
    with np.errstate(over="ignore"):
        z = linear.astype(np.uint64) + np.uint64(seed + 1) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _sample_block(
    refl: np.ndarray, ok: np.ndarray, *, t0: int, y0: int, x0: int, shape: tuple[int, int],
    prob: np.ndarray, seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Sampled (linear index (m,), values (m, band) float64) of one (t, band, y, x) block."""
    t, yy, xx = np.nonzero(ok)
    h, w = shape
    linear = ((t + t0).astype(np.uint64) * np.uint64(h) + (yy + y0).astype(np.uint64)) * np.uint64(
        w
    ) + (xx + x0).astype(np.uint64)
    keep = splitmix_keys(linear, seed) < prob[t + t0]
    values = refl[t[keep], :, yy[keep], xx[keep]].astype(np.float64)
    return linear[keep], values


def _candidate_block(
    refl: np.ndarray, ok: np.ndarray, *, t0: int, y0: int, x0: int, shape: tuple[int, int],
    n_blocks: int, n: int, seed: int,
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """One read of a (t, band, y, x) block for :func:`sample_valid_pixels`: its valid pixels per
    date ``(t,)`` int64, the key bound ``q`` it kept, and the candidates (linear index, values)
    whose key is below ``q`` - a superset of the final sample wherever ``q >= p``."""
    counts = ok.sum(axis=(1, 2)).astype(np.int64)
    total = int(counts.sum())
    q = 1.0 if total == 0 else min(1.0, _OVERSAMPLE * n / (n_blocks * total))
    linear, values = _sample_block(refl, ok, t0=t0, y0=y0, x0=x0, shape=shape,
                                   prob=np.full(t0 + ok.shape[0], q), seed=seed)
    return counts, q, linear, values


def sample_valid_pixels(
    reflectance: da.Array, ok: da.Array, *, n: int, seed: int, per_date: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded sample of about ``n`` valid pixels (per date if ``per_date``).

    One pass over the cube: each block counts its valid pixels and keeps the candidates whose
    key is below ``q = min(1, 4 n / (blocks x block's valid pixels))`` (blocks of the date in
    ``per_date`` mode, of the cube otherwise), about ``4 n`` pixels in all. The sampling
    probability ``p`` (module docstring) follows from the counts; a block with ``q >= p`` holds
    every sampled pixel among its candidates, and only a block with ``q < p`` (more than 4x the
    mean valid pixels of its blocks) is read again. The sample is the same as counting first
    and sampling after.

    Args:
        reflectance: (time, band, y, x) float dask array, reflectance.
        ok: (time, y, x) bool dask array, True where the pixel may be used, same chunks in
            time/y/x as ``reflectance``; ``reflectance`` must have one chunk along band.
        n: target sample size. seed: hash seed.

    Returns:
        ``(dates (m,) int64, values (m, band) float64, n_valid (time,) int64)``, sorted by
        global position.
    """
    n_t, _, h, w = reflectance.shape
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]).astype(int) for c in ok.chunks]
    n_blocks = len(ok.chunks[1]) * len(ok.chunks[2]) * (1 if per_date else len(ok.chunks[0]))
    r_blocks, o_blocks = reflectance.to_delayed(), ok.to_delayed()
    where = [(it, iy, ix) for it in range(len(ok.chunks[0]))
             for iy in range(len(ok.chunks[1])) for ix in range(len(ok.chunks[2]))]
    kw = {"shape": (h, w), "seed": seed}
    parts = dask.compute(*[
        dask.delayed(_candidate_block)(r_blocks[it, 0, iy, ix], o_blocks[it, iy, ix], t0=starts[0][it],
                                       y0=starts[1][iy], x0=starts[2][ix], n_blocks=n_blocks, n=n, **kw)
        for it, iy, ix in where
    ])
    n_valid = np.zeros(n_t, np.int64)
    for (it, _, _), (counts, _, _, _) in zip(where, parts):
        n_valid[starts[0][it] : starts[0][it] + len(counts)] += counts
    if per_date:
        prob = np.minimum(1.0, n / np.maximum(n_valid, 1))
    else:
        prob = np.full(n_t, min(1.0, n / max(int(n_valid.sum()), 1)))
    linear_parts, value_parts, again = [], [], []
    for (it, iy, ix), (counts, q, linear, values) in zip(where, parts):
        t0 = starts[0][it]
        if q >= prob[t0 : t0 + len(counts)].max():
            dates = (linear // np.uint64(h * w)).astype(np.int64)
            keep = splitmix_keys(linear, seed) < prob[dates]
            linear_parts.append(linear[keep])
            value_parts.append(values[keep])
        else:
            again.append(dask.delayed(_sample_block)(r_blocks[it, 0, iy, ix], o_blocks[it, iy, ix], t0=t0,
                                                      y0=starts[1][iy], x0=starts[2][ix], prob=prob, **kw))
    if again:
        log.debug("PCA sample: %d of %d blocks read again (valid pixels far above the mean)",
                  len(again), len(where))
        for linear, values in dask.compute(*again):
            linear_parts.append(linear)
            value_parts.append(values)
    linear = np.concatenate(linear_parts) if linear_parts else np.zeros(0, np.uint64)
    values = np.concatenate(value_parts) if value_parts else np.zeros((0, reflectance.shape[1]))
    order = np.argsort(linear, kind="stable")
    dates = (linear[order] // np.uint64(h * w)).astype(np.int64)
    return dates, values[order], n_valid


def _fit(values: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    from sklearn.decomposition import PCA  # here: the tile plan reads PcaFit records without scikit-learn

    pca = PCA(n_components=k, svd_solver="full").fit(values)
    comps = pca.components_.copy()
    flip = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    comps *= np.where(flip == 0, 1.0, flip)[:, None]
    std = np.sqrt(np.maximum(pca.explained_variance_, 0.0))
    return pca.mean_, comps, std, pca.explained_variance_ratio_


def fit_pca(
    reflectance: da.Array, ok: da.Array, *, n_components: int, mode: PcaMode, sample: int,
    seed: int,
) -> PcaFit:
    """Fit the PCA of :mod:`this module <pipeline.enrich.pca>` on valid pixels.

    Args:
        reflectance: (time, band, y, x) float32 dask array, unitless, NaN = nodata, one chunk
            along band.
        ok: (time, y, x) bool dask array, valid and all bands finite; same chunks.
        n_components: components kept (<= bands). mode: global or per_date.
        sample: pixels to sample (per date in per_date mode). seed: sample seed.

    Raises:
        FeatureError: no valid pixel at all, or fewer valid pixels than needed.
    """
    n_t, n_b = reflectance.shape[:2]
    k = n_components
    dates, values, n_valid = sample_valid_pixels(
        reflectance, ok, n=sample, seed=seed, per_date=mode == "per_date"
    )
    if len(values) <= k:
        raise FeatureError(
            f"only {len(values)} valid pixels in the cube (need > {k}) to fit the PCA; check "
            f"the cube's valid mask (QA decoding, cloud limits) or widen the dates"
        )
    if mode == "per_date" and len(values) > sample:  # global fit on a subsample of the union
        pick = np.sort(np.random.default_rng(seed).choice(len(values), sample, replace=False))
        g = _fit(values[pick], k)
    else:
        g = _fit(values, k)
    mean = np.tile(g[0], (n_t, 1))
    comps = np.tile(g[1], (n_t, 1, 1))
    std = np.tile(g[2], (n_t, 1))
    evr = np.tile(g[3], (n_t, 1))
    n_used = np.full(n_t, len(values) if mode == "global" else min(len(values), sample))
    fallback: list[int] = []
    if mode == "per_date":
        counts = np.bincount(dates, minlength=n_t)
        for t in range(n_t):
            if counts[t] < max(MIN_DATE_SAMPLES, k + 1):
                fallback.append(t)
                continue
            mean[t], comps[t], std[t], evr[t] = _fit(values[dates == t], k)
            n_used[t] = counts[t]
        if fallback:
            log.warning(
                "per-date PCA: %d date(s) with < %d valid pixels use the global PCA: %s",
                len(fallback), max(MIN_DATE_SAMPLES, k + 1), fallback,
            )
    log.info(
        "PCA (%s) on %d of %d valid pixels; explained variance ratio (date 0) %s",
        mode, len(values), int(n_valid.sum()), np.round(evr[0], 4).tolist(),
    )
    return PcaFit(mean, comps, std, evr, n_used.astype(np.int64), tuple(fallback), mode)
