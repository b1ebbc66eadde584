"""Tiling for seam-free, bounded-memory prediction of a fully convolutional model.

A model whose output pixel depends only on inputs within ``r`` pixels (its receptive-field
radius, e.g. the sum of the kernel radii of its convolutions) and that pads with zeros at
the image border gives *exactly* the full-image result when each tile is predicted on a read
window grown by a halo ``>= r`` and only the tile's core is kept: every core pixel then sees
the same inputs as in the full image, and at the image border the read window stops where
the image stops, so the model's own zero padding coincides with the full image's. No
blending is needed (cropping is exact); the price is the redundant halo computation, see
:func:`pipeline.tiling.windows.redundancy`.

The tiles and their windows are those of :func:`pipeline.tiling.windows.tile_windows`
(``window`` = the read window).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike
from tqdm import tqdm

from pipeline.errors import PredictionError
from pipeline.tiling.windows import Tile, redundancy, tile_windows

log = logging.getLogger(__name__)


def crop_core(tile: Tile, prediction: np.ndarray) -> np.ndarray:
    """The core of a prediction (..., y, x) made on ``tile.window``; leading dims kept."""
    if tuple(prediction.shape[-2:]) != tile.window.shape:
        raise PredictionError(
            f"prediction of tile ({tile.row}, {tile.col}) has spatial shape {tuple(prediction.shape[-2:])}, "
            f"expected its read window {tile.window.shape}; the model must keep the spatial size ('same' padding)"
        )
    return prediction[(..., *tile.core_in_window)]


def stitch(
    pieces: Iterable[tuple[Tile, np.ndarray]],
    shape: tuple[int, int],
    *,
    out: np.ndarray | None = None,
    dtype: DTypeLike = None,
) -> np.ndarray:
    """Assemble per-tile predictions into one (..., y, x) array.

    Args:
        pieces: (tile, prediction) pairs; each prediction has dims (..., y, x) covering the
            tile's (read) window (its core is cut out with :func:`crop_core`).
        shape: grid size (height, width).
        out: optional preallocated (..., height, width) array (e.g. a memory map) to fill.
        dtype: dtype of a newly allocated output (default: that of the first prediction).

    Returns:
        The filled array. Raises :class:`PredictionError` unless every pixel is covered by
        exactly one core (a missing or duplicated tile).
    """
    h, w = shape
    covered = np.zeros((h, w), dtype=np.uint8)
    for tile, pred in pieces:
        core = crop_core(tile, np.asarray(pred))
        if out is None:
            out = np.empty((*core.shape[:-2], h, w), dtype=dtype or core.dtype)
        out[(..., *tile.core.slices)] = core
        covered[tile.core.slices] += 1
    if out is None or (covered != 1).any():
        bad = int((covered != 1).sum())
        raise PredictionError(
            f"stitching left {bad} of {h * w} pixels uncovered or covered twice; pass every tile of tile_windows once"
        )
    return out


def predict_tiled(
    image: Any,
    fn: Callable[[np.ndarray], np.ndarray],
    *,
    tile: int | Sequence[int],
    halo: int | Sequence[int],
    out: np.ndarray | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Apply ``fn`` tile by tile to ``image`` (..., y, x) and stitch the cores.

    Args:
        image: dims (..., y, x), any array indexable by ``image[..., ys, xs]`` (numpy, dask,
            xarray, zarr); only one read window is loaded at a time.
        fn: maps a (..., ry, rx) numpy array to a (..., ry, rx) prediction (leading dims may
            differ, e.g. (time, channel) -> (class,)); receptive-field radius <= ``halo``.
        tile, halo: see :func:`pipeline.tiling.windows.tile_windows`.
        out: optional preallocated output (..., y, x).
        progress: show a tqdm bar.

    Returns:
        The prediction for the whole grid, equal to ``fn(image)`` when ``fn`` is
        translation-equivariant with zero padding and receptive-field radius <= ``halo``.
    """
    shape = (int(image.shape[-2]), int(image.shape[-1]))
    tiles = tile_windows(shape, tile, halo)
    log.debug("predicting %d tiles, redundancy %.3f", len(tiles), redundancy(shape, tile, halo))

    def pieces() -> Iterable[tuple[Tile, np.ndarray]]:
        for t in tqdm(tiles, desc="tiles", disable=not progress):
            yield t, fn(np.asarray(image[(..., *t.window.slices)]))

    return stitch(pieces(), shape, out=out)
