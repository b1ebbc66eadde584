"""Mosaics of GeoTIFFs on one grid: a GDAL VRT and a row-block reader of it.

The sources are windows of one grid (same CRS, pixel size and phase), e.g. the tile maps of a
tiled AOI (:mod:`pipeline.tiling.mosaic`), so a mosaic is pure copying of each source into its
place, never resampling:

- :func:`write_vrt`: a GDAL VRT (what ``gdalbuildvrt`` writes) placing GeoTIFFs at their
  (row, col) offsets; :class:`VrtBands` reads it row block by row block, so the COG writer of
  :mod:`pipeline.raster.cog` converts the mosaic with bounded memory.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window as RioWindow

from pipeline.errors import GridError

_GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
               "float32": "Float32", "float64": "Float64"}


def write_vrt(sources: Sequence[tuple[str | os.PathLike[str], tuple[int, int]]], path: str | os.PathLike[str], *,
              shape: tuple[int, int], transform: Sequence[float] | Affine, crs: str) -> Path:
    """Write a VRT of the (H, W) AOI grid placing each source GeoTIFF at its (row, col) offset.

    Every source must cover whole pixels of the grid (its transform the AOI's translated by
    its offset) and share the first source's band count, dtype and nodata; the VRT takes the
    first source's band descriptions, colour table (band 1) and nodata. Sources are referenced
    relative to the VRT's folder. Returns ``path``.
    """
    aff = transform if isinstance(transform, Affine) else Affine(*list(transform)[:6])
    out = Path(path)
    with rasterio.open(sources[0][0]) as first:
        count, dtype, nodata = first.count, first.dtypes[0], first.nodata
        descriptions = first.descriptions
        colormap = first.colormap(1) if first.colorinterp[0].name == "palette" else None
    root = ET.Element("VRTDataset", rasterXSize=str(shape[1]), rasterYSize=str(shape[0]))
    ET.SubElement(root, "SRS").text = rasterio.crs.CRS.from_user_input(crs).to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(float(v)) for v in aff.to_gdal())
    bands = []
    for b in range(count):
        band = ET.SubElement(root, "VRTRasterBand", dataType=_GDAL_TYPES[dtype], band=str(b + 1))
        if nodata is not None:
            ET.SubElement(band, "NoDataValue").text = repr(float(nodata))
        if descriptions[b]:
            ET.SubElement(band, "Description").text = descriptions[b]
        if b == 0 and colormap:
            ET.SubElement(band, "ColorInterp").text = "Palette"
            table = ET.SubElement(band, "ColorTable")
            for i in range(max(colormap) + 1):
                r, g, bl, a = colormap.get(i, (0, 0, 0, 0))
                ET.SubElement(table, "Entry", c1=str(r), c2=str(g), c3=str(bl), c4=str(a))
        bands.append(band)
    for src_path, (row, col) in sources:
        with rasterio.open(src_path) as src:
            expect = aff * Affine.translation(col, row)
            if src.count != count or src.dtypes[0] != dtype or src.nodata != nodata:
                raise GridError(f"{src_path} has {src.count} {src.dtypes[0]} band(s), nodata {src.nodata}; "
                                f"the first tile {count} {dtype}, nodata {nodata}: rerun the tile predictions")
            if not src.transform.almost_equals(expect, precision=1e-6 * abs(aff.a)):
                raise GridError(f"{src_path} transform {tuple(src.transform)[:6]} is not the AOI grid's at "
                                f"row {row}, col {col} {tuple(expect)[:6]}; rerun the tile predictions")
            h, w = src.height, src.width
        rel = os.path.relpath(Path(src_path).resolve(), out.parent.resolve())
        for b, band in enumerate(bands):
            simple = ET.SubElement(band, "SimpleSource")
            ET.SubElement(simple, "SourceFilename", relativeToVRT="1").text = rel
            ET.SubElement(simple, "SourceBand").text = str(b + 1)
            ET.SubElement(simple, "SrcRect", xOff="0", yOff="0", xSize=str(w), ySize=str(h))
            ET.SubElement(simple, "DstRect", xOff=str(col), yOff=str(row), xSize=str(w), ySize=str(h))
    ET.indent(root)
    out.write_text(ET.tostring(root, encoding="unicode") + "\n", encoding="utf-8")
    return out


class VrtBands:
    """Read-only (band, y, x) array view of a raster (a VRT), read row block by row block.

    Supports what the COG writer needs: ``shape``, ``dtype`` and ``[:, r0:r1]`` (any row slice
    of all bands), each read through GDAL from the open dataset.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._src = rasterio.open(path)
        self.shape = (self._src.count, self._src.height, self._src.width)
        self.dtype = np.dtype(self._src.dtypes[0])

    def __getitem__(self, key: Any) -> np.ndarray:
        if not (isinstance(key, tuple) and len(key) == 2 and key[0] == slice(None) and isinstance(key[1], slice)):
            raise TypeError("VrtBands supports [:, r0:r1] only")
        r0, r1, _ = key[1].indices(self.shape[1])
        return self._src.read(window=RioWindow(0, r0, self.shape[2], max(r1 - r0, 0)))

    def close(self) -> None:
        """Close the dataset."""
        self._src.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
