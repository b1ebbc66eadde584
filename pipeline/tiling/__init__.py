"""Tiles: windows with halos for tiled prediction, and large AOIs split into tiles.

- :mod:`pipeline.tiling.windows`: :class:`~pipeline.tiling.windows.Window`, the one
  :class:`~pipeline.tiling.windows.Tile` type (core inside a window) and the planner of tiles
  with halos, :func:`~pipeline.tiling.windows.tile_windows`.
- :mod:`pipeline.tiling.predict`: seam-free tiled prediction of a fully convolutional model
  (:func:`~pipeline.tiling.predict.predict_tiled`).
- :mod:`pipeline.tiling.layout`: the tile layout of a large AOI's grid and its overlap (read
  when the workflow is parsed: no torch, no xarray).
- :mod:`pipeline.tiling.plan`: the per-AOI plan of a tiled run (dates kept, PCA):
  :func:`~pipeline.tiling.plan.plan_tiles`, ``plan.json`` + ``grid.zarr``.
- :mod:`pipeline.tiling.cores`: the tiles' cores of tile Zarr stores as one AOI dataset.
- :mod:`pipeline.tiling.mosaic`: the AOI feature store and maps mosaicked from the tiles'.

The stage commands are in :mod:`pipeline.tiles`. This package module imports nothing, so the
workflow reads :mod:`pipeline.tiling.layout` without the heavier modules.
"""
