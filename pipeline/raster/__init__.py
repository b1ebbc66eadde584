"""Raster I/O and pixel-level decoding: loading STAC assets, QA bits, Zarr and GeoTIFF."""
