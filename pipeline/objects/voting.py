"""Object-based voting (relearning paper): the classes of a map's pixels are replaced by one
vote per image segment (segments: :mod:`pipeline.objects.segments`), and the voted segments become
polygons for GIS.

With predict option ``voting`` ("majority" | "probability", default "none") the stage
:mod:`pipeline.vote` writes ``results/{aoi}/maps/{model}/voted/``: ``classes.tif`` (uint8
class ids, 0 = nodata, same colour table) and ``segments.gpkg`` (layer ``segments``: one
(multi)polygon per segment with ``segment``, ``class_id``, ``class_name``,
``mean_probability``, ``pixels``, ``area_m2``, ``area_ha``).

Votes: "majority" = the class most pixels of the segment were mapped to (ties -> the earlier
class of the class table); "probability" = the highest mean class probability over the
segment's pixels among the classes mapped in the segment. Either way a pixel only ever gets a
class already present in its segment; nodata pixels (0) stay nodata and are not counted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import shapes
from shapely.geometry import shape
from skimage.measure import label as connected_components

from pipeline.errors import GridError, PredictionError
from pipeline.objects.options import SegmentOptions, VoteMethod
from pipeline.objects.segments import date_segments, map_date_index

log = logging.getLogger(__name__)


def complete_segments(segments: np.ndarray, mapped: np.ndarray) -> np.ndarray:
    """Segments (y, x) int32 where every ``mapped`` pixel belongs to a segment: mapped pixels
    without one (label 0) get new labels, one per 4-connected group; unmapped pixels get 0."""
    seg = np.where(mapped, np.asarray(segments, dtype=np.int32), 0).astype(np.int32)
    orphans = mapped & (seg == 0)
    if orphans.any():
        extra = connected_components(orphans, background=0, connectivity=1).astype(np.int32)
        seg = np.where(orphans, extra + int(seg.max()), seg).astype(np.int32)
    return seg


def _class_index(classes: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
    lut = np.full(256, -1, np.int64)
    lut[class_ids] = np.arange(len(class_ids))
    idx = lut[classes.astype(np.uint8)]
    bad = (classes != 0) & (idx < 0)
    if bad.any():
        raise PredictionError(
            f"the map holds class ids {sorted(set(np.unique(classes[bad]).tolist()))} missing from the class table "
            f"{class_ids.tolist()}; vote with the class table the map was made with"
        )
    return idx


def segment_statistics(classes: np.ndarray, segments: np.ndarray, *, class_ids: Sequence[int],
                       probabilities: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-segment class counts (N+1, K) int64 and, with ``probabilities``, per-segment sums
    of the class probabilities (N+1, K) float64 over the mapped pixels (row 0 = no segment).

    ``classes``: (y, x) uint8 class ids, 0 = nodata; ``segments``: (y, x) int32 labels 0..N;
    ``probabilities``: (K, y, x) float in class table order, NaN = nodata.
    """
    ids = np.asarray(class_ids, dtype=np.int64)
    k = len(ids)
    idx = _class_index(np.asarray(classes), ids)
    mapped = (idx >= 0) & (segments > 0)
    seg = segments[mapped].astype(np.int64)
    n = int(segments.max(initial=0)) + 1
    counts = np.bincount(seg * k + idx[mapped], minlength=n * k).reshape(n, k)
    sums = None
    if probabilities is not None:
        sums = np.stack([np.bincount(seg, weights=np.nan_to_num(np.asarray(probabilities[j])[mapped]), minlength=n)
                         for j in range(k)], axis=1)
    return counts, sums


def segment_votes(counts: np.ndarray, sums: np.ndarray | None, *, method: VoteMethod) -> np.ndarray:
    """Winning class index (N+1,) int64 per segment from :func:`segment_statistics` (-1 for
    segments without a mapped pixel)."""
    if method == "majority":
        win = counts.argmax(axis=1)
    elif method == "probability":
        if sums is None:
            raise PredictionError("probability voting needs the class probabilities; pass probabilities")
        score = np.where(counts > 0, sums / np.maximum(counts.sum(axis=1, keepdims=True), 1), -np.inf)
        win = score.argmax(axis=1)
    else:
        raise PredictionError(f"voting method {method!r} not allowed (allowed: majority, probability)")
    return np.where(counts.sum(axis=1) > 0, win, -1)


def vote(classes: np.ndarray, segments: np.ndarray, *, class_ids: Sequence[int], method: VoteMethod = "majority",
         probabilities: np.ndarray | None = None) -> np.ndarray:
    """Voted map (y, x) uint8: every mapped pixel of a segment gets the segment's vote.

    ``classes``: (y, x) uint8 class ids, 0 = nodata (kept); ``segments``: (y, x) int labels,
    0 = no segment (the pixel keeps its class); ``class_ids``: class table ids (K,) in
    probability order; ``probabilities``: (K, y, x) float (required for "probability").
    """
    classes = np.asarray(classes)
    segments = np.asarray(segments)
    if classes.shape != segments.shape:
        raise PredictionError(f"classes {classes.shape} and segments {segments.shape} differ in shape")
    counts, sums = segment_statistics(classes, segments, class_ids=class_ids, probabilities=probabilities)
    win = segment_votes(counts, sums, method=method)
    ids = np.asarray(class_ids, dtype=np.uint8)
    seg_class = np.where(win >= 0, ids[np.maximum(win, 0)], 0).astype(np.uint8)
    return np.where((classes != 0) & (segments > 0), seg_class[segments], classes).astype(np.uint8)


def vote_map(classes: np.ndarray, probabilities: np.ndarray, features: xr.Dataset, when: str, *,
             class_ids: Sequence[int], method: VoteMethod, segment_options: SegmentOptions) -> tuple[np.ndarray, np.ndarray]:
    """Vote a map over the segments of its date.

    Args:
        classes: (y, x) uint8 class ids, 0 = nodata.
        probabilities: (K, y, x) float in class table order, NaN = nodata.
        features: features store on the map's grid (``features`` (time, channel, y, x)).
        when: the map date (ISO), a date of ``features``.
        class_ids: class table ids (K,) in probability order.
        method, segment_options: the vote method and the segmentation (:mod:`pipeline.objects.options`).

    Returns:
        ``voted`` (y, x) uint8 (:func:`vote`) and ``segments`` (y, x) int32 (:func:`complete_segments`:
        every mapped pixel in one segment).
    """
    index = map_date_index(features, when)
    segments = complete_segments(date_segments(features, index, options=segment_options), classes > 0)
    voted = vote(classes, segments, class_ids=class_ids, method=method, probabilities=probabilities)
    return voted, segments


def segment_polygons(voted: np.ndarray, segments: np.ndarray, *, class_table: Sequence[dict[str, Any]],
                     crs: str, transform: Sequence[float], probabilities: np.ndarray | None = None) -> gpd.GeoDataFrame:
    """Polygons of the voted segments.

    Args:
        voted: (y, x) uint8 voted class ids (:func:`vote`), 0 = nodata (not polygonised).
        segments: (y, x) int labels from :func:`complete_segments` (every mapped pixel in one).
        class_table: [{id, name, ...}] in probability order.
        crs: grid CRS, projected with metre units (areas); transform: GDAL affine (6 floats).
        probabilities: (K, y, x) float, NaN = nodata; gives ``mean_probability`` (mean
            probability of the voted class over the segment's mapped pixels; NaN without it).

    Returns:
        GeoDataFrame in ``crs`` with one row per segment: ``segment``, ``class_id``,
        ``class_name``, ``mean_probability``, ``pixels``, ``area_m2`` (pixels x pixel area),
        ``area_ha``, ``geometry`` ((Multi)Polygon of its mapped pixels).
    """
    crs_obj = CRS.from_user_input(crs)
    if not crs_obj.is_projected or (crs_obj.linear_units or "").lower() not in ("metre", "meter", "m"):
        raise GridError(f"segment areas need a projected CRS in metres, got {crs}; build the cube on a UTM grid")
    aff = Affine(*transform[:6])
    pixel_area = abs(aff.a * aff.e - aff.b * aff.d)
    ids = [int(c["id"]) for c in class_table]
    names = {int(c["id"]): str(c["name"]) for c in class_table}
    mapped = (np.asarray(voted) != 0) & (np.asarray(segments) > 0)
    seg = np.where(mapped, segments, 0).astype(np.int32)
    pieces = [(shape(geom), int(value)) for geom, value in shapes(seg, mask=mapped, connectivity=4, transform=aff)]
    if not pieces:
        return gpd.GeoDataFrame({"segment": [], "class_id": [], "class_name": [], "mean_probability": [],
                                 "pixels": [], "area_m2": [], "area_ha": []}, geometry=[], crs=crs_obj.to_wkt())
    gdf = gpd.GeoDataFrame({"segment": [v for _, v in pieces]}, geometry=[g for g, _ in pieces], crs=crs_obj.to_wkt())
    gdf = gdf.dissolve(by="segment", as_index=False)
    flat_seg, flat_cls = seg[mapped].astype(np.int64), np.asarray(voted)[mapped]
    n = int(seg.max()) + 1
    pixels = np.bincount(flat_seg, minlength=n)
    seg_class = np.zeros(n, np.int64)
    seg_class[flat_seg] = flat_cls
    mean_p = np.full(n, np.nan)
    if probabilities is not None:
        k_of = {cid: j for j, cid in enumerate(ids)}
        p_voted = np.zeros(flat_seg.shape)
        for cid, j in k_of.items():
            sel = flat_cls == cid
            p_voted[sel] = np.nan_to_num(np.asarray(probabilities[j])[mapped][sel])
        mean_p = np.bincount(flat_seg, weights=p_voted, minlength=n) / np.maximum(pixels, 1)
    s = gdf["segment"].to_numpy()
    gdf["class_id"] = seg_class[s].astype(np.uint8)
    gdf["class_name"] = [names.get(int(c), "") for c in seg_class[s]]
    gdf["mean_probability"] = mean_p[s].astype(np.float32)
    gdf["pixels"] = pixels[s]
    gdf["area_m2"] = pixels[s] * pixel_area
    gdf["area_ha"] = gdf["area_m2"] / 1e4
    return gdf[["segment", "class_id", "class_name", "mean_probability", "pixels", "area_m2", "area_ha", "geometry"]]
