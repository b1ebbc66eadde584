"""The tile stores (Zarr) of a tiled AOI put together: one lazy AOI dataset of the tiles' cores.

Tiles are windows of the AOI grid (same CRS, pixel size and phase,
:mod:`pipeline.tiling.layout`), so the mosaic is pure copying of each tile's core into its
place, never resampling. The plan stage mosaics the tile cubes
(:func:`pipeline.tiling.plan.plan_tiles`), the features mosaic the tile feature stores
(:func:`pipeline.tiling.mosaic.run_mosaic_features`).
"""

from __future__ import annotations

from collections.abc import Sequence

import xarray as xr

from pipeline.errors import GridError
from pipeline.tiling.layout import TileLayout

__all__ = ["mosaic_cores"]


def mosaic_cores(stores: Sequence[xr.Dataset], layout: TileLayout, *, what: str = "store") -> xr.Dataset:
    """The AOI dataset of the tiles' cores (lazy).

    Args:
        stores: one dataset per tile of ``layout`` in its order, each covering that tile's
            window: dims including ``y`` and ``x`` (pixel centres, the window's), the same
            ``time`` (and other non-spatial) coordinates in every tile.
        layout: the AOI's tile layout.
        what: the kind of store, for messages.

    Returns:
        Dataset of the variables and coordinates with ``y``/``x`` dims over the AOI grid
        (H, W), dtypes unchanged; ``y``/``x`` are the tiles' own coordinates (windows of the AOI
        grid). Variables without ``y``/``x`` dims (per-tile statistics) are left out; attrs are
        those of the first tile.

    Raises:
        GridError: a store's shape differs from its tile window, or tiles disagree on the
            non-spatial coordinates.
    """
    if len(stores) != len(layout.tiles):
        raise GridError(f"{len(stores)} tile {what}s for {len(layout.tiles)} tiles; rerun the workflow")
    rows, cols = layout.grid
    grid: list[list[xr.Dataset]] = [[xr.Dataset()] * cols for _ in range(rows)]
    for tile, ds in zip(layout.tiles, stores, strict=True):
        shape = (ds.sizes.get("y", 0), ds.sizes.get("x", 0))
        if shape != tile.window.shape:
            raise GridError(f"tile {tile.id} {what} is {shape[0]} x {shape[1]} px, its window "
                            f"{tile.window.shape[0]} x {tile.window.shape[1]}; the tiling changed - rerun the workflow")
        spatial = [v for v in ds.data_vars if {"y", "x"} <= set(ds[v].dims)]
        ys, xs = tile.core_in_window
        grid[tile.row][tile.col] = ds[spatial].isel(y=ys, x=xs)
    try:
        return xr.combine_nested(grid, concat_dim=["y", "x"], data_vars="all", coords="different",
                                 compat="equals", join="exact", combine_attrs="override")
    except ValueError as exc:
        raise GridError(f"the tile {what}s do not fit together ({exc}); rebuild them (delete results/<aoi>/tiles)") from exc
