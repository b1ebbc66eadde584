"""Full-image prediction of a trained model: probabilities, class ids and confidence of one map date.

Prediction runs tile by tile with a halo equal to the model's receptive-field radius
(:mod:`pipeline.models.receptive`, :mod:`pipeline.tiling.predict`), so the result does not depend on
the tile size (no seams) and memory is bounded by one tile whatever the image size; the
full-size probabilities live in disk-backed arrays. The stage :mod:`pipeline.predict` reads the
stores and writes the maps; a tile of a tiled AOI is checked with :func:`check_tile`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from pipeline.errors import ConfigError, PredictionError
from pipeline.inference.loading import predict_window
from pipeline.models.receptive import (
    aligned_tile,
    receptive_radius,
    tile_alignment,
    tile_halo,
)
from pipeline.raster.disk_array import DiskArray
from pipeline.tiling.layout import FEATURE_HALO
from pipeline.tiling.predict import predict_tiled
from pipeline.tiling.windows import Tile, redundancy

log = logging.getLogger(__name__)


def window_fn(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``block`` (t, C, h, w) float -> class probabilities (K, h, w) float32 of ``model`` (numpy,
    on CPU): the per-tile function of :func:`pipeline.tiling.predict.predict_tiled`."""
    def fn(block: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))[None]
        return predict_window(model, x)[0].cpu().numpy()

    return fn


ROWS = 512  # row blocks of the full-size arrays


def predict_date(features: xr.Dataset, index: int, model: Any, meta: dict[str, Any], *, tile: int,
                 workdir: Path) -> tuple[DiskArray, DiskArray]:
    """Probabilities (K, y, x) float32 (NaN = nodata) and clear-observation counts (y, x) int32
    for the window of ``t`` dates ending at time ``index``, both disk-backed in ``workdir``
    (:class:`pipeline.raster.disk_array.DiskArray`: sliced copies, ``np.asarray`` reads whole).

    ``features``: features.zarr layout (``features`` (time, channel, y, x), ``valid``); ``model``
    and ``meta`` of :func:`pipeline.inference.loading.load_model`; ``tile``: core tile side in
    pixels, aligned to the model (:func:`pipeline.models.receptive.aligned_tile`); the map does not
    depend on it."""
    t = int(meta["time_steps"])
    if index + 1 < t:
        raise PredictionError(f"date index {index} has fewer than t={t} dates before it; predict from date {t} on")
    ny, nx = features.sizes["y"], features.sizes["x"]
    k = int(meta["num_classes"])
    window = slice(index + 1 - t, index + 1)
    image = features["features"].isel(time=window).data
    halo, tile = tile_halo(meta), aligned_tile(tile, meta)  # exact tiling (pipeline.models.receptive)
    log.info("tiles %d px + halo %d px (receptive radius %d): redundancy factor %.2f", tile, halo,
             receptive_radius(meta), redundancy((ny, nx), tile, halo))
    out = DiskArray(workdir / f"probabilities_{index}.npy", (k, ny, nx), np.float32)
    predict_tiled(image, window_fn(model), tile=tile, halo=halo, out=out, progress=True)
    count = DiskArray(workdir / f"valid_count_{index}.npy", (ny, nx), np.int32)
    valid = features["valid"].isel(time=window)
    for r0 in range(0, ny, ROWS):
        rows = slice(r0, r0 + ROWS)
        block = valid.isel(y=rows).astype("int16").sum("time").values
        count[rows] = block
        if (block == 0).any():
            probs = out[:, rows]
            probs[:, block == 0] = np.nan
            out[:, rows] = probs
    return out, count


def classify_block(block: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class ids (y, x) uint8 (0 = nodata) and confidence (y, x) float32 (NaN = nodata) of
    probabilities ``block`` (K, y, x) float32 (NaN = nodata); ``ids``: class id of each k."""
    block = np.asarray(block)
    ok = np.isfinite(block[0])
    filled = np.where(ok[None], block, 0)
    return (np.where(ok, ids[filled.argmax(axis=0)], 0).astype(np.uint8),
            np.where(ok, filled.max(axis=0), np.nan).astype(np.float32))


def check_tile(tile: Tile, shape: tuple[int, int], meta: dict[str, Any], base_meta: dict[str, Any] | None) -> None:
    """Stop unless predicting ``tile`` of an AOI grid of ``shape`` alone gives the untiled map on its
    core: enough overlap for the feature halo plus the model's (and first-stage model's) halo,
    window origins on the models' alignment, and no whole-map step (object voting/relearning)."""
    record = meta.get("relearning")
    if record and record.get("strategy") == "object":
        raise ConfigError("object relearning segments the whole map date, which tiles cannot do alone; "
                          "use pixel relearning, or runtime.tiling.tile_size: null")
    metas = [meta] + ([base_meta] if base_meta else [])
    need = FEATURE_HALO + sum(tile_halo(m) for m in metas)
    if min(tile.margins(shape), default=need) < need:
        raise ConfigError(f"tile {tile.id} has {min(tile.margins(shape))} px of overlap, the model needs {need} "
                          f"(feature halo {FEATURE_HALO} + receptive-field halo); raise runtime.tiling.overlap to {need} or "
                          f"set it to null (automatic)")
    align = max(tile_alignment(m) for m in metas)
    if tile.window.y0 % align or tile.window.x0 % align:
        raise ConfigError(f"tile {tile.id} window starts at row {tile.window.y0}, col {tile.window.x0}; model "
                          f"{meta['model']} needs multiples of {align}: make runtime.tiling.tile_size and runtime.tiling.overlap "
                          f"multiples of {align}")
