"""Reference labels: the class table, labels on the cube grid, label scarcity.

``classes`` (the class table everyone uses), ``dates`` (label dates and matching them to the
cube), ``rasterize`` (label rasters/vectors onto the cube grid), ``scarcity`` (fewer dates,
sparser pixels), ``options`` (the labels stage options) and ``build`` (the labels.zarr
dataset).
"""

from __future__ import annotations

from pipeline.reference.classes import ClassTable, LandCoverClass

__all__ = ["ClassTable", "LandCoverClass"]
