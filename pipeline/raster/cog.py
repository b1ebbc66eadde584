"""Cloud Optimized GeoTIFF writers for the prediction stage's map outputs.

Every writer stages the array in a tiled GeoTIFF next to the target, converts it with GDAL's
COG driver (DEFLATE, 512 x 512 blocks, internal overviews) into a temporary sibling and
renames it into place (:func:`pipeline.atomic.atomic_path`): a failed write never leaves a
file at the final path. Sidecars follow the *final* name (``classes.tif.aux.xml``). The
writers take numpy arrays or array-likes (disk-backed or lazy, :mod:`pipeline.raster.disk_array`)
and check, convert and write them 512 rows at a time, never holding a full-size copy; a value
that fails a check in a later row block stops the writing (nothing is left at the final path).

=================  =======  ======================  ========  ====================
writer             dtype    values                  nodata    overview resampling
=================  =======  ======================  ========  ====================
write_class_cog    uint8    class ids               0         MODE (never averages)
write_probability  uint8    percent 0..100 / class  255       AVERAGE
write_confidence   uint8    percent 0..100          255       AVERAGE
write_count        uint16   valid observations      65535     AVERAGE
=================  =======  ======================  ========  ====================

The class raster embeds a colour table (id -> colour, nodata transparent); its category
names and a thematic raster attribute table (Value, Name, Red, Green, Blue, Alpha) go into the
GDAL PAM sidecar ``<name>.aux.xml``, which GDAL and QGIS read with the raster.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.windows import Window

from pipeline.atomic import atomic_path, write_text_atomic
from pipeline.errors import GridError, PredictionError
from pipeline.raster.disk_array import RowMap
from pipeline.reference.classes import ClassTableLike, as_class_table

log = logging.getLogger(__name__)

BLOCKSIZE = 512
PROBABILITY_NODATA = 255
COUNT_NODATA = 65535

TransformLike = Affine | Sequence[float]
CrsLike = CRS | str | int


def check_grid(crs: CrsLike, transform: TransformLike) -> tuple[CRS, Affine]:
    try:
        crs_obj = CRS.from_user_input(crs)
    except (CRSError, TypeError, ValueError) as exc:
        raise GridError(f"CRS {crs!r} is not understood ({exc}); pass e.g. 'EPSG:32649'") from exc
    if isinstance(transform, Affine):
        aff = transform
    else:
        vals = [float(v) for v in transform]
        if len(vals) not in (6, 9):
            raise GridError(f"transform {transform!r} must hold 6 affine coefficients a, b, c, d, e, f")
        aff = Affine(*vals[:6])
    if not all(np.isfinite(list(aff)[:6])) or aff.determinant == 0:
        raise GridError(f"transform {tuple(aff)[:6]} is degenerate; pass the grid's a, b, c, d, e, f")
    return crs_obj, aff


ROWS_PER_WRITE = 512  # rows converted / written at a time


def _array_like(values: Any) -> Any:
    """``values`` itself when it is array-like (numpy, :class:`pipeline.raster.disk_array.DiskArray`,
    :class:`RowMap`, dask: read by row blocks, never whole), else ``np.asarray(values)``."""
    return values if all(hasattr(values, a) for a in ("shape", "dtype", "ndim", "__getitem__")) else np.asarray(values)


def _row_blocks(height: int) -> list[slice]:
    return [slice(r0, min(r0 + ROWS_PER_WRITE, height)) for r0 in range(0, height, ROWS_PER_WRITE)]


def _aux(path: Path) -> Path:
    return path.with_name(path.name + ".aux.xml")


def _write_cog(
    bands: np.ndarray,
    path: str | os.PathLike[str],
    *,
    crs: CrsLike,
    transform: TransformLike,
    nodata: float,
    resampling: Literal["MODE", "AVERAGE"],
    blocksize: int,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
    descriptions: Sequence[str] | None = None,
    units: str | None = None,
    pam_xml: str | None = None,
) -> Path:
    """Stage ``bands`` (band, y, x) in a GeoTIFF, convert it to a COG, rename into place."""
    crs_obj, aff = check_grid(crs, transform)
    final = Path(path)
    if blocksize < 16 or blocksize % 16:
        raise PredictionError(f"COG blocksize {blocksize} must be a positive multiple of 16 (512)")
    if final.suffix.lower() not in (".tif", ".tiff"):
        raise PredictionError(f"COG output {final} must end in .tif or .tiff")
    count, height, width = bands.shape
    profile = {
        "driver": "GTiff", "height": height, "width": width, "count": count,
        "dtype": bands.dtype.name, "crs": crs_obj, "transform": aff, "nodata": nodata,
        "tiled": True, "blockxsize": 256, "blockysize": 256,
    }
    cog_opts = {
        "COMPRESS": "DEFLATE", "BLOCKSIZE": str(blocksize), "OVERVIEW_RESAMPLING": resampling,
        "BIGTIFF": "IF_SAFER", "PREDICTOR": "NO" if colormap else "YES",
    }
    with atomic_path(final) as tmp:
        staging = tmp.with_name(tmp.name + ".src.tif")
        try:
            with rasterio.open(staging, "w", **profile) as dst:
                for r0 in range(0, height, ROWS_PER_WRITE):  # row blocks: disk-backed inputs stay out of RAM
                    r1 = min(r0 + ROWS_PER_WRITE, height)
                    dst.write(np.asarray(bands[:, r0:r1]), window=Window(0, r0, width, r1 - r0))
                if colormap:
                    dst.write_colormap(1, colormap)
                if descriptions:
                    dst.descriptions = tuple(descriptions)
                if units:
                    dst.units = (units,) * count
            with rasterio.open(staging) as src:
                rasterio.shutil.copy(src, tmp, driver="COG", **cog_opts)
        finally:
            staging.unlink(missing_ok=True)
            _aux(staging).unlink(missing_ok=True)
        gdal_aux = _aux(tmp)
        if pam_xml is not None:
            gdal_aux.unlink(missing_ok=True)
            write_text_atomic(_aux(final), pam_xml)
        elif gdal_aux.exists():  # metadata GDAL could not store in the TIFF itself
            os.replace(gdal_aux, _aux(final))
        else:  # a stale sidecar of an earlier raster would override the new one
            _aux(final).unlink(missing_ok=True)
    log.info("wrote %s (%d band(s), %d x %d, %s)", final, count, height, width, bands.dtype.name)
    return final


def write_cog(bands: Any, path: str | os.PathLike[str], *, crs: CrsLike, transform: TransformLike, nodata: float,
              resampling: Literal["MODE", "AVERAGE"], **style: Any) -> Path:
    """Write an array-like ``bands`` (band, y, x; ``shape``, ``dtype``, ``[:, r0:r1]``) already in
    its stored dtype as a COG the way the writers below do (``style``: ``colormap``,
    ``descriptions``, ``units``, ``pam_xml``): the tiled-AOI mosaic (:mod:`pipeline.tiling.mosaic`)."""
    return _write_cog(bands, path, crs=crs, transform=transform, nodata=nodata, resampling=resampling,
                      blocksize=BLOCKSIZE, **style)


def category_pam_xml(class_table: ClassTableLike, *, nodata: int = 0) -> str:
    """GDAL PAM XML for band 1: ``<CategoryNames>`` and a thematic RAT of the class table.

    Category *i* names pixel value *i* (empty for nodata and unused values); the RAT has one
    row per class with columns Value, Name, Red, Green, Blue, Alpha (GDAL field usages
    MinMax, Name, Red, Green, Blue, Alpha).
    """
    table = as_class_table(class_table)
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    cats = ET.SubElement(band, "CategoryNames")
    by_id = {e.id: e.name for e in table}
    for value in range(max(max(by_id), nodata) + 1):
        ET.SubElement(cats, "Category").text = by_id.get(value, "")
    rat = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
    # GDAL field types: 0 integer, 2 string; usages: 5 MinMax, 2 Name, 6..9 Red..Alpha.
    fields = [("Value", 0, 5), ("Name", 2, 2), ("Red", 0, 6), ("Green", 0, 7), ("Blue", 0, 8), ("Alpha", 0, 9)]
    for i, (name, ftype, usage) in enumerate(fields):
        fd = ET.SubElement(rat, "FieldDefn", index=str(i))
        ET.SubElement(fd, "Name").text = name
        ET.SubElement(fd, "Type").text = str(ftype)
        ET.SubElement(fd, "Usage").text = str(usage)
    for i, e in enumerate(table):
        row = ET.SubElement(rat, "Row", index=str(i))
        for value in (e.id, e.name, *e.rgba):
            ET.SubElement(row, "F").text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write_class_cog(
    classes: np.ndarray,
    path: str | os.PathLike[str],
    *,
    crs: CrsLike,
    transform: TransformLike,
    class_table: ClassTableLike,
    nodata: int = 0,
    blocksize: int = BLOCKSIZE,
) -> Path:
    """Write a classified map as a paletted COG plus its PAM sidecar ``<path>.aux.xml``.

    Args:
        classes: dims (y, x), integer class ids of ``class_table``; ``nodata`` (0) where
            unmapped. Any other value raises :class:`PredictionError`.
        path: final ``.tif`` path; the sidecar is ``<path>.aux.xml``.
        crs: grid CRS (``"EPSG:32649"``, EPSG int or rasterio CRS).
        transform: grid affine (a, b, c, d, e, f) in CRS units.
        class_table: class ids, names and colours (see
            :func:`pipeline.reference.classes.as_class_table`).
        nodata: value of unmapped pixels, transparent in the colour table.
        blocksize: COG tile size in pixels (512).

    Returns:
        ``path``. The raster is uint8, DEFLATE, overviews resampled by MODE (nodata ignored).
    """
    table = as_class_table(class_table)
    arr = _array_like(classes)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise PredictionError(f"classes must be a 2-D integer (y, x) array, got {arr.ndim}-D {arr.dtype}")
    if not 0 <= nodata <= 255 or nodata in {e.id for e in table}:
        raise PredictionError(f"nodata {nodata} must be in 0..255 and no class id; use 0")
    allowed = {e.id for e in table} | {nodata}
    lows, highs, hist = [], [], np.zeros(256, np.int64)
    for rows in _row_blocks(arr.shape[0]):  # bincount: linear time, no sort nor copy of the whole map
        block = np.asarray(arr[rows])
        if block.size:
            lows.append(int(block.min()))
            highs.append(int(block.max()))
            if lows[-1] >= 0 and highs[-1] <= 255:
                hist += np.bincount(block.ravel().astype(np.uint8), minlength=256)
    lo, hi = min(lows, default=0), max(highs, default=0)
    present = sorted({lo, hi} - allowed) if lo < 0 or hi > 255 else np.flatnonzero(hist).tolist()
    unknown = [v for v in present if v not in allowed]
    if unknown:
        raise PredictionError(
            f"classes hold ids {unknown} missing from the class table {sorted(allowed - {nodata})}; "
            f"predict with the class table the model was trained with"
        )
    colormap = table.colormap(nodata)
    return _write_cog(
        RowMap(arr, lambda b: b.astype(np.uint8)[np.newaxis], shape=(1, *arr.shape), dtype=np.uint8), path,
        crs=crs, transform=transform, nodata=nodata,
        resampling="MODE", blocksize=blocksize, colormap=colormap, descriptions=["class"],
        pam_xml=category_pam_xml(table, nodata=nodata),
    )


def _percent(values: Any, what: str, nodata: int) -> RowMap:
    """float 0..1 (NaN = nodata), (band, y, x) or (y, x) -> (band, y, x) uint8 rounded percent,
    ``nodata`` where NaN, converted row block by row block as it is written (no full-size copy;
    a value out of range stops the writing)."""

    def convert(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float32)
        finite = np.isfinite(v)
        if np.isinf(v).any():
            raise PredictionError(f"{what} contain infinite values; mark missing pixels with NaN")
        if finite.any() and (v[finite].min() < -1e-4 or v[finite].max() > 1 + 1e-4):
            raise PredictionError(
                f"{what} must lie in [0, 1], got {v[finite].min():.4g}..{v[finite].max():.4g}; "
                f"apply softmax / sigmoid before writing"
            )
        out = np.full(v.shape, nodata, dtype=np.uint8)
        out[finite] = np.rint(np.clip(v[finite], 0.0, 1.0) * 100.0).astype(np.uint8)
        return out if out.ndim == 3 else out[np.newaxis]

    shape = tuple(values.shape) if values.ndim == 3 else (1, *values.shape)
    return RowMap(values, convert, shape=shape, dtype=np.uint8)


def write_probability_cog(
    probabilities: np.ndarray,
    path: str | os.PathLike[str],
    *,
    crs: CrsLike,
    transform: TransformLike,
    class_table: ClassTableLike,
    nodata: int = PROBABILITY_NODATA,
    blocksize: int = BLOCKSIZE,
) -> Path:
    """Write class probabilities as a multi-band uint8 percent COG.

    Args:
        probabilities: dims (class, y, x) in class table order, float 0..1, NaN = nodata.
        class_table: one band per class; band descriptions are the class names.
        nodata: written where NaN (255; percent values use 0..100).

    Returns:
        ``path``: uint8, percent (rounded), units "percent", AVERAGE overviews.
    """
    table = as_class_table(class_table)
    arr = _array_like(probabilities)
    if arr.ndim != 3 or arr.shape[0] != len(table):
        raise PredictionError(
            f"probabilities must be (class, y, x) with {len(table)} classes, got shape {arr.shape}"
        )
    if not 100 < nodata <= 255:
        raise PredictionError(f"probability nodata {nodata} must be in 101..255; use 255")
    return _write_cog(
        _percent(arr, "probabilities", nodata), path, crs=crs, transform=transform, nodata=nodata,
        resampling="AVERAGE", blocksize=blocksize, descriptions=[e.name for e in table], units="percent",
    )


def write_confidence_cog(
    confidence: np.ndarray,
    path: str | os.PathLike[str],
    *,
    crs: CrsLike,
    transform: TransformLike,
    nodata: int = PROBABILITY_NODATA,
    blocksize: int = BLOCKSIZE,
) -> Path:
    """Write per-pixel confidence (y, x) float 0..1, NaN = nodata, as uint8 percent COG.

    Returns ``path``: uint8 0..100, ``nodata`` (255) where NaN, AVERAGE overviews.
    """
    arr = _array_like(confidence)
    if arr.ndim != 2:
        raise PredictionError(f"confidence must be a 2-D (y, x) array, got shape {arr.shape}")
    if not 100 < nodata <= 255:
        raise PredictionError(f"confidence nodata {nodata} must be in 101..255; use 255")
    return _write_cog(
        _percent(arr, "confidence values", nodata), path, crs=crs, transform=transform,
        nodata=nodata, resampling="AVERAGE", blocksize=blocksize, descriptions=["confidence"], units="percent",
    )


def write_count_cog(
    counts: np.ndarray,
    path: str | os.PathLike[str],
    *,
    crs: CrsLike,
    transform: TransformLike,
    nodata: int = COUNT_NODATA,
    blocksize: int = BLOCKSIZE,
) -> Path:
    """Write the number of valid observations per pixel as a uint16 COG.

    Args:
        counts: dims (y, x), integer counts >= 0; a negative value marks a pixel outside
            the mapped area and is written as ``nodata``. 0 is a real count (no clear
            observation), so it cannot be the nodata value.
        nodata: 65535 (counts must stay below it).

    Returns ``path``: uint16, AVERAGE overviews (mean count of the covered pixels).
    """
    arr = _array_like(counts)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise PredictionError(f"counts must be a 2-D integer (y, x) array, got {arr.ndim}-D {arr.dtype}")
    top = max((int(np.asarray(arr[rows]).max(initial=0)) for rows in _row_blocks(arr.shape[0])), default=0)
    if top >= nodata:
        raise PredictionError(f"valid counts reach {top} >= nodata {nodata}; counts must stay below it")
    out = RowMap(arr, lambda b: np.where(b < 0, nodata, b).astype(np.uint16)[np.newaxis], shape=(1, *arr.shape),
                 dtype=np.uint16)
    return _write_cog(
        out, path, crs=crs, transform=transform, nodata=nodata, resampling="AVERAGE",
        blocksize=blocksize, descriptions=["valid_count"], units="observations",
    )
