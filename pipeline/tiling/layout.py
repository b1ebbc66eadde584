"""Large AOIs split into tiles: the layout of tile cores and overlapping windows on the AOI grid.

The AOI grid is the cube stage's grid (:func:`pipeline.raster.load.aoi_geobox`: the AOI bounds
in the grid CRS snapped outward to the resolution, pixel centres on the Landsat grid). It
depends only on the AOI geometry, CRS, resolution and anchor, never on the items, so the
layout is known when the workflow is parsed (tiles are Snakemake wildcards; no checkpoint).

Tile ``r{i}c{j}`` owns the core rows ``[i s, min((i + 1) s, H))`` and columns
``[j s, min((j + 1) s, W))`` of the (H, W) AOI grid (``s`` = ``runtime.tiling.tile_size``): the cores
cover the grid exactly once. Its window is the core grown by ``overlap`` pixels on every side,
clipped at the AOI edge (a :class:`pipeline.tiling.windows.Tile`). Cores and windows are
windows *of the AOI grid* (same CRS, same pixel size, transform translated by whole pixels),
so a mosaic is pure copying.

The overlap makes the mosaic seam-free: the feature stem is exact only :data:`FEATURE_HALO`
pixels away from a window edge inside the AOI (beyond it the tile has no data), and a model's
output pixel depends on features within its receptive-field radius
(:func:`pipeline.models.receptive.tile_halo`). With ``overlap >= FEATURE_HALO + tile_halo`` every core
pixel sees exactly what it sees in the untiled run. ``overlap: null`` takes that sum for the
configured model (plus the first-stage model's halo for relearning), rounded up to
:data:`ALIGN` pixels (UNet max-pooling is shift-equivariant by multiples of 2^depth only, so
window origins stay on that phase when ``tile_size`` is a multiple of it too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError
from pipeline.models.registry import split_model_name
from pipeline.tiling.windows import Tile, tile_windows

#: Halo (px) of the feature stem, :data:`pipeline.enrich.stem.HALO` (not imported: this module
#: is read when the workflow is parsed and by the cube stage, which need no torch; a test checks
#: that both agree).
FEATURE_HALO = 8
#: Automatic overlaps are rounded up to a multiple of this (UNet depth <= 4 alignment).
ALIGN = 16

__all__ = ["ALIGN", "FEATURE_HALO", "TileLayout", "auto_overlap", "model_halo", "tile_layout"]


@dataclass(frozen=True)
class TileLayout:
    """The tiles of one AOI grid of ``shape`` (H, W) pixels, row-major."""

    shape: tuple[int, int]
    tile_size: int
    overlap: int
    tiles: tuple[Tile, ...]

    @property
    def ids(self) -> list[str]:
        """Tile ids in row-major order (``r0c0``, ``r0c1``, ...)."""
        return [t.id for t in self.tiles]

    @property
    def grid(self) -> tuple[int, int]:
        """Tile rows and columns."""
        return (max(t.row for t in self.tiles) + 1, max(t.col for t in self.tiles) + 1)

    def tile(self, tile_id: str) -> Tile:
        """The tile named ``tile_id``; ConfigError naming the valid ids otherwise."""
        for t in self.tiles:
            if t.id == tile_id:
                return t
        raise ConfigError(f"no tile {tile_id!r} in this AOI's layout (tiles: {', '.join(self.ids)}); "
                          f"the tiling config changed - rerun the workflow")

    def to_dict(self) -> dict[str, Any]:
        """JSON form (recorded in the plan and passed to the stages)."""
        return {"shape": list(self.shape), "tile_size": self.tile_size, "overlap": self.overlap,
                "tiles": [t.to_dict() for t in self.tiles]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TileLayout:
        """Inverse of :meth:`to_dict`."""
        return cls((int(d["shape"][0]), int(d["shape"][1])), int(d["tile_size"]), int(d["overlap"]),
                   tuple(Tile.from_dict(t) for t in d["tiles"]))


def tile_layout(shape: tuple[int, int], *, tile_size: int, overlap: int) -> TileLayout:
    """Split an (H, W) AOI grid into cores of ``tile_size`` px with ``overlap`` px windows
    (:func:`pipeline.tiling.windows.tile_windows`, ids ``r{row}c{col}``).

    The last row/column of tiles holds the remainder (smaller cores). Raises ConfigError for a
    non-positive size, a negative overlap or an empty grid.
    """
    h, w = (int(v) for v in shape)
    if h < 1 or w < 1:
        raise ConfigError(f"the AOI grid {h} x {w} px is empty; check the AOI bbox and cube.resolution")
    if tile_size < 1 or overlap < 0:
        raise ConfigError(f"runtime.tiling.tile_size {tile_size} must be >= 1 and runtime.tiling.overlap {overlap} >= 0")
    tiles = tile_windows((h, w), int(tile_size), int(overlap))
    return TileLayout((h, w), int(tile_size), int(overlap), tuple(tiles))


def model_halo(model: str, train: dict[str, Any]) -> int:
    """Prediction halo (px) of ``model`` (a model name, ``{model}_relearn_{strategy}`` included)
    trained with the ``train`` config section: its tile halo, plus the first-stage model's
    for relearning (whose probabilities are an input)."""
    from pipeline.models.receptive import (
        tile_halo,  # torch: only when the overlap is automatic
    )

    name, strategy = split_model_name(model)
    halo = tile_halo({"model": name, "time_steps": train.get("time_steps", 20), "options": train})
    if strategy != "none":
        base = train.get("relearning_base") or name
        halo += tile_halo({"model": split_model_name(base)[0], "time_steps": train.get("time_steps", 20),
                           "options": train})
    return halo


def auto_overlap(model: str, train: dict[str, Any]) -> int:
    """``runtime.tiling.overlap: null``: :data:`FEATURE_HALO` + :func:`model_halo`, rounded up to
    :data:`ALIGN` pixels."""
    need = FEATURE_HALO + model_halo(model, train)
    return int(math.ceil(need / ALIGN) * ALIGN)
