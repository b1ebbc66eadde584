"""The embedded offline demo: a synthetic Landsat 8/9 Collection 2 Level-2 time series.

It generates, from a seed, a realistic two-year series over a peri-urban AOI near Changsha
(EPSG:32649, WRS-2 path 123 row 040): SR and QA_PIXEL Cloud Optimized GeoTIFFs with the real
scale/offset/nodata and bit layout, per-date reference labels (cultivated, forest,
construction, water, cloud, shadow), and a static STAC catalog in the structure of the
Planetary Computer ``landsat-c2-l2`` collection. Arrays are drawn by pure functions
(:mod:`.landscape`, :mod:`.spectra`, :mod:`.clouds`, :mod:`.scenes`); :mod:`.catalog` writes them.
``python -m pipeline.synthetic`` (:mod:`.__main__`) is the stage ``demo`` that writes the catalog.
"""

from __future__ import annotations

from pipeline.synthetic.catalog import generate_demo_catalog
from pipeline.synthetic.spec import DEMO_CLASSES, DemoGrid, DemoSpec, demo_grid

__all__ = ["DEMO_CLASSES", "DemoGrid", "DemoSpec", "demo_grid", "generate_demo_catalog"]
