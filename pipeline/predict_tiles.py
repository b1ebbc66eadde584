"""Tiling for seam-free, bounded-memory prediction of a fully convolutional model.

A model whose output pixel depends only on inputs within ``r`` pixels (its receptive-field
radius, e.g. the sum of the kernel radii of its convolutions) and that pads with zeros at
the image border gives *exactly* the full-image result when each tile is predicted on a read
window grown by a halo ``>= r`` and only the tile's core is kept: every core pixel then sees
the same inputs as in the full image, and at the image border the read window stops where
the image stops, so the model's own zero padding coincides with the full image's. No
blending is needed (cropping is exact); the price is the redundant halo computation, see
:func:`redundancy`.

Windows are half-open pixel ranges ``[y0, y1) x [x0, x1)`` of the (y, x) grid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike
from tqdm import tqdm

from pipeline.errors import ConfigError, PredictionError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """Half-open pixel window ``[y0, y1) x [x0, x1)``."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y1 - self.y0, self.x1 - self.x0)

    @property
    def size(self) -> int:
        return (self.y1 - self.y0) * (self.x1 - self.x0)

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(slice(y0, y1), slice(x0, x1))`` to index the last two dims of an array."""
        return (slice(self.y0, self.y1), slice(self.x0, self.x1))


@dataclass(frozen=True)
class Tile:
    """One tile: ``core`` (pixels it owns) inside ``read`` (core + halo, clipped to the image)."""

    row: int
    col: int
    core: Window
    read: Window

    @property
    def core_in_read(self) -> tuple[slice, slice]:
        """Slices selecting the core from an array covering the read window."""
        c, r = self.core, self.read
        return (slice(c.y0 - r.y0, c.y1 - r.y0), slice(c.x0 - r.x0, c.x1 - r.x0))


def _pair(value: int | Sequence[int], name: str, minimum: int) -> tuple[int, int]:
    vals = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(vals) != 2 or any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < minimum for v in vals):
        raise ConfigError(f"{name} must be an integer >= {minimum} (or a (y, x) pair of them), got {value!r}")
    return (int(vals[0]), int(vals[1]))


def plan_tiles(shape: tuple[int, int], tile: int | Sequence[int], halo: int | Sequence[int]) -> list[Tile]:
    """Split a (y, x) grid of ``shape`` into tiles of ``tile`` pixels with a ``halo`` margin.

    Cores partition the grid row by row (the last row/column of tiles is smaller when the
    shape is not a multiple of the tile size); each read window is the core grown by
    ``halo`` on every side and clipped to the grid.

    Args:
        shape: grid size (height, width) in pixels.
        tile: core size in pixels, one int or (y, x).
        halo: margin in pixels, at least the model's receptive-field radius; int or (y, x).
    """
    h, w = _pair(tuple(shape), "shape", 1)
    ty, tx = _pair(tile, "tile size", 1)
    hy, hx = _pair(halo, "halo", 0)
    tiles: list[Tile] = []
    for row, y0 in enumerate(range(0, h, ty)):
        for col, x0 in enumerate(range(0, w, tx)):
            core = Window(y0, min(y0 + ty, h), x0, min(x0 + tx, w))
            read = Window(max(core.y0 - hy, 0), min(core.y1 + hy, h), max(core.x0 - hx, 0), min(core.x1 + hx, w))
            tiles.append(Tile(row, col, core, read))
    return tiles


def redundancy(shape: tuple[int, int], tile: int | Sequence[int], halo: int | Sequence[int]) -> float:
    """Pixels the model computes when tiling / pixels of the grid (>= 1; 1 = no overhead).

    Sum of the read-window areas of :func:`plan_tiles` over ``shape[0] * shape[1]``; for an
    interior tile it is ``(tile + 2 halo)^2 / tile^2``, border tiles compute less.
    """
    tiles = plan_tiles(shape, tile, halo)
    return sum(t.read.size for t in tiles) / float(shape[0] * shape[1])


def crop_core(tile: Tile, prediction: np.ndarray) -> np.ndarray:
    """The core of a prediction (..., y, x) made on ``tile.read``; leading dims kept."""
    if tuple(prediction.shape[-2:]) != tile.read.shape:
        raise PredictionError(
            f"prediction of tile ({tile.row}, {tile.col}) has spatial shape {tuple(prediction.shape[-2:])}, "
            f"expected its read window {tile.read.shape}; the model must keep the spatial size ('same' padding)"
        )
    return prediction[(..., *tile.core_in_read)]


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
            tile's *read* window (its core is cut out with :func:`crop_core`).
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
            f"stitching left {bad} of {h * w} pixels uncovered or covered twice; pass every tile of plan_tiles once"
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
        tile, halo: see :func:`plan_tiles`.
        out: optional preallocated output (..., y, x).
        progress: show a tqdm bar.

    Returns:
        The prediction for the whole grid, equal to ``fn(image)`` when ``fn`` is
        translation-equivariant with zero padding and receptive-field radius <= ``halo``.
    """
    shape = (int(image.shape[-2]), int(image.shape[-1]))
    tiles = plan_tiles(shape, tile, halo)
    log.debug("predicting %d tiles, redundancy %.3f", len(tiles), redundancy(shape, tile, halo))

    def pieces() -> Iterable[tuple[Tile, np.ndarray]]:
        for t in tqdm(tiles, desc="tiles", disable=not progress):
            yield t, fn(np.asarray(image[(..., *t.read.slices)]))

    return stitch(pieces(), shape, out=out)
