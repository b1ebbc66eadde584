"""Pixel windows and tiles of a (y, x) grid: the one :class:`Tile` type and the planner of
tiles with halos (:func:`tile_windows`).

Windows are half-open pixel ranges ``[y0, y1) x [x0, x1)`` of the (y, x) grid. A tile owns its
``core`` (the cores of a plan partition the grid, each pixel once) and is read or computed on
its ``window``: the core grown by a halo (overlap) on every side, clipped to the grid. The same
tiles serve tiled prediction inside one image (:mod:`pipeline.tiling.predict`, halo = the
model's receptive-field radius) and the tiles of a large AOI (:mod:`pipeline.tiling.layout`,
halo = ``runtime.tiling.overlap``). This module needs numpy only (the workflow reads it when parsed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import ConfigError

__all__ = ["Tile", "Window", "redundancy", "tile_windows"]


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
    """One tile in row ``row``, column ``col`` of the tile grid: ``core`` (the pixels it owns)
    inside ``window`` (core + halo, clipped to the grid), both half-open pixel windows of the
    grid. Its id is ``r{row}c{col}``."""

    row: int
    col: int
    core: Window
    window: Window

    @property
    def id(self) -> str:
        """``r{row}c{col}`` (the ``{tile}`` wildcard of a tiled AOI)."""
        return f"r{self.row}c{self.col}"

    @property
    def core_in_window(self) -> tuple[slice, slice]:
        """Slices selecting the core from an array covering the window (last two dims)."""
        c, w = self.core, self.window
        return (slice(c.y0 - w.y0, c.y1 - w.y0), slice(c.x0 - w.x0, c.x1 - w.x0))

    def margins(self, shape: tuple[int, int]) -> list[int]:
        """Overlap (px) on the top, bottom, left, right sides whose window edge lies inside the
        (H, W) grid of ``shape`` (a window edge on the grid edge is left out: the window stops
        where the image stops, as untiled, so it needs no overlap there)."""
        h, w = shape
        c, win = self.core, self.window
        sides = [(c.y0 - win.y0, win.y0 > 0), (win.y1 - c.y1, win.y1 < h),
                 (c.x0 - win.x0, win.x0 > 0), (win.x1 - c.x1, win.x1 < w)]
        return [m for m, inside in sides if inside]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: id, row, col, core and window as [y0, y1, x0, x1]."""
        c, w = self.core, self.window
        return {"id": self.id, "row": self.row, "col": self.col,
                "core": [c.y0, c.y1, c.x0, c.x1], "window": [w.y0, w.y1, w.x0, w.x1]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tile:
        """Inverse of :meth:`to_dict` (the id follows from row and col)."""
        return cls(int(d["row"]), int(d["col"]), Window(*map(int, d["core"])), Window(*map(int, d["window"])))


def _pair(value: int | Sequence[int], name: str, minimum: int) -> tuple[int, int]:
    vals = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(vals) != 2 or any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < minimum for v in vals):
        raise ConfigError(f"{name} must be an integer >= {minimum} (or a (y, x) pair of them), got {value!r}")
    return (int(vals[0]), int(vals[1]))


def tile_windows(shape: tuple[int, int], tile: int | Sequence[int], halo: int | Sequence[int]) -> list[Tile]:
    """Split a (y, x) grid of ``shape`` into tiles of ``tile`` pixels with a ``halo`` margin.

    Cores partition the grid row by row (the last row/column of tiles is smaller when the
    shape is not a multiple of the tile size); each window is the core grown by ``halo`` on
    every side and clipped to the grid.

    Args:
        shape: grid size (height, width) in pixels.
        tile: core size in pixels, one int or (y, x).
        halo: margin in pixels (for prediction at least the model's receptive-field radius);
            int or (y, x).

    Returns:
        The tiles in row-major order. Raises ConfigError for a size, tile or halo that is not
        an integer (pair) of at least 1, 1 and 0.
    """
    h, w = _pair(tuple(shape), "shape", 1)
    ty, tx = _pair(tile, "tile size", 1)
    hy, hx = _pair(halo, "halo", 0)
    tiles: list[Tile] = []
    for row, y0 in enumerate(range(0, h, ty)):
        for col, x0 in enumerate(range(0, w, tx)):
            core = Window(y0, min(y0 + ty, h), x0, min(x0 + tx, w))
            window = Window(max(core.y0 - hy, 0), min(core.y1 + hy, h), max(core.x0 - hx, 0), min(core.x1 + hx, w))
            tiles.append(Tile(row, col, core, window))
    return tiles


def redundancy(shape: tuple[int, int], tile: int | Sequence[int], halo: int | Sequence[int]) -> float:
    """Pixels the model computes when tiling / pixels of the grid (>= 1; 1 = no overhead).

    Sum of the window areas of :func:`tile_windows` over ``shape[0] * shape[1]``; for an
    interior tile it is ``(tile + 2 halo)^2 / tile^2``, border tiles compute less.
    """
    tiles = tile_windows(shape, tile, halo)
    return sum(t.window.size for t in tiles) / float(shape[0] * shape[1])
