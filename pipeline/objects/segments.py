"""Image objects (segments) of one date: a 3-band PCA composite of the reflectance bands,
segmented with scikit-image (Felzenszwalb-Huttenlocher graph merging or SLIC superpixels).

Used by object-based relearning (:mod:`pipeline.training.relearning`, strategy "object") and
object-based voting (:mod:`pipeline.objects.voting`). Segment labels are int32 ``1..N``, every segment
4-connected (so one segment = one polygon, possibly with holes), 0 = no segment (a pixel
without finite reflectance in every band). The settings: :class:`pipeline.objects.options.SegmentOptions`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import xarray as xr
from skimage.measure import label as connected_components
from skimage.segmentation import felzenszwalb, slic

from pipeline.errors import FeatureError, PredictionError
from pipeline.objects.options import SegmentOptions

log = logging.getLogger(__name__)

REFLECTANCE_BANDS = ("coastal", "blue", "green", "red", "nir08", "swir16", "swir22")
SLIC_COMPACTNESS = 0.1  # composite values lie in [0, 1]: colour distances are ~0.01..1


def band_channels(channel_names: Sequence[object]) -> list[int]:
    """Indices of the reflectance band channels (names of :data:`REFLECTANCE_BANDS`) among the
    feature channel names, in channel order; all channels when none carries a band name."""
    idx = [i for i, name in enumerate(channel_names) if str(name) in REFLECTANCE_BANDS]
    return idx or list(range(len(channel_names)))


def pca_composite(bands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3-band composite of one date's bands by PCA over its valid pixels.

    Args:
        bands: (band, y, x) float, reflectance (unitless), NaN where missing.

    Returns:
        ``composite`` (y, x, 3) float32 in [0, 1]: the first three principal component scores
        (signs fixed so that each component's largest loading is positive; zeros when there are
        fewer than three bands), each stretched linearly between its 2nd and 98th percentile
        and clipped; 0 where not valid. ``valid`` (y, x) bool: every band finite.
    """
    b = np.asarray(bands, dtype=np.float64)
    if b.ndim != 3:
        raise FeatureError(f"bands must be (band, y, x), got shape {b.shape}")
    valid = np.isfinite(b).all(axis=0)
    ny, nx = valid.shape
    comp = np.zeros((ny, nx, 3), np.float32)
    if valid.sum() < 2:
        return comp, valid
    x = b[:, valid].T
    x = x - x.mean(axis=0)
    evals, evecs = np.linalg.eigh(x.T @ x / max(len(x) - 1, 1))
    order = np.argsort(evals)[::-1][:3]
    vecs = evecs[:, order]
    vecs = vecs * np.where(vecs[np.abs(vecs).argmax(axis=0), np.arange(vecs.shape[1])] < 0, -1.0, 1.0)
    scores = x @ vecs
    for j in range(scores.shape[1]):
        lo, hi = np.percentile(scores[:, j], [2, 98])
        s = (scores[:, j] - lo) / (hi - lo) if hi > lo else np.zeros(len(scores))
        comp[valid, j] = np.clip(s, 0.0, 1.0)
    return comp, valid


def segment_image(composite: np.ndarray, valid: np.ndarray, *, options: SegmentOptions = SegmentOptions()) -> np.ndarray:
    """Segment a composite.

    Args:
        composite: (y, x, 3) float in [0, 1] (see :func:`pca_composite`).
        valid: (y, x) bool, pixels to segment.
        options: see :class:`SegmentOptions`.

    Returns:
        (y, x) int32 labels ``1..N``, each a 4-connected set of valid pixels; 0 where not valid.
    """
    comp = np.where(valid[..., None], np.asarray(composite, dtype=np.float64), 0.0)
    if not valid.any():
        return np.zeros(valid.shape, np.int32)
    if options.method == "felzenszwalb":
        raw = felzenszwalb(comp, scale=options.scale, sigma=options.sigma, min_size=options.size, channel_axis=-1)
    else:
        n_segments = max(1, math.ceil(int(valid.sum()) / options.size))
        raw = slic(comp, n_segments=n_segments, compactness=SLIC_COMPACTNESS, sigma=options.sigma, mask=valid,
                   channel_axis=-1, start_label=1, enforce_connectivity=True, convert2lab=False)
    raw = np.asarray(raw, dtype=np.int64) + 1  # 0 is reserved for "no segment"
    raw[~valid] = 0
    # split segments that the mask or 8-connected merging left in several 4-connected pieces
    return np.asarray(connected_components(raw, background=0, connectivity=1), dtype=np.int32)


def date_composite(features: xr.Dataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA composite (y, x, 3) float32 and validity (y, x) bool of date ``index`` of a
    features store (``features`` (time, channel, y, x), band channels named as the cube
    bands; all channels are used when none is)."""
    fv = features["features"]
    names = list(features["channel"].values) if "channel" in features.coords else list(range(fv.sizes["channel"]))
    bands = fv.isel(time=index, channel=band_channels(names)).values
    return pca_composite(bands)


def date_segments(features: xr.Dataset, index: int, *, options: SegmentOptions = SegmentOptions()) -> np.ndarray:
    """Segments (y, x) int32 (0 = none) of date ``index`` of a features store."""
    comp, valid = date_composite(features, index)
    seg = segment_image(comp, valid, options=options)
    log.debug("date %d: %d segments (%s)", index, int(seg.max()), options.method)
    return seg


def map_date_index(features: xr.Dataset, when: str) -> int:
    """Index of the date ``when`` (ISO date) in the features' time axis."""
    dates = [str(t)[:10] for t in features["time"].values]
    if when not in dates:
        raise PredictionError(f"the map date {when} is not a date of the features store ({dates[0]}..{dates[-1]}); "
                              f"vote with the features the map was predicted from")
    return dates.index(when)
