"""Bring reference labels onto the cube grid: reproject label rasters, rasterize vectors.

Every function returns class-id arrays on the cube grid: dims (y, x), uint8, ``0`` =
unlabelled (ignored by training and evaluation). Raster codes become class ids first
(nodata, ``labels.ignore_values``, ``labels.value_map``: :mod:`pipeline.reference.codes`),
in the raster's own grid. Labels in another CRS are reprojected;
raster labels are resampled with *nearest* when the label raster is as coarse as or coarser
than the cube grid, and with *mode* when it is finer (the most frequent value among the source
pixels of a cube pixel, "unlabelled" counted as a value, so mostly unlabelled pixels stay 0).
Vector features are burnt where they cover a pixel centre (``rasterio.features.rasterize``,
``all_touched=False``); where features overlap, the later one in file order wins.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import rasterio.warp
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning

from pipeline.errors import GridError, LabelError
from pipeline.reference.classes import ClassTable
from pipeline.reference.codes import LabelCodes, codes_to_class_ids

log = logging.getLogger(__name__)

Bounds = tuple[float, float, float, float]

# The label raster counts as "finer" (-> mode) when its pixels, expressed in the cube CRS,
# cover less than this share of a cube pixel's area.
_FINER_AREA_RATIO = 0.75


@dataclass(frozen=True)
class CubeGrid:
    """The cube's pixel grid: ``crs`` (e.g. "EPSG:32649"), GDAL ``transform`` (CRS units),
    ``shape`` (height, width) and ``times`` (the cube's time coordinate, datetime64[ns])."""

    crs: str
    transform: Affine
    shape: tuple[int, int]
    times: np.ndarray

    @property
    def bounds(self) -> Bounds:
        """(left, bottom, right, top) in the grid CRS."""
        h, w = self.shape
        x0, y0 = self.transform @ (0, 0)
        x1, y1 = self.transform @ (w, h)
        return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def grid_from_store(ds: xr.Dataset) -> CubeGrid:
    """The grid of a pipeline store (attrs ``crs``/``transform``, coords ``y``/``x``/``time``).

    Raises :class:`GridError` when the ``x``/``y`` pixel-centre coordinates disagree with the
    transform.
    """
    try:
        crs = str(ds.attrs["crs"])
        transform = Affine(*[float(v) for v in list(ds.attrs["transform"])[:6]])
        x = np.asarray(ds["x"].values, dtype=np.float64)
        y = np.asarray(ds["y"].values, dtype=np.float64)
        times = np.asarray(ds["time"].values)
    except (KeyError, TypeError, ValueError) as exc:
        raise GridError(
            f"the cube lacks a usable grid ({exc}); it needs attrs crs/transform and coords "
            "time/y/x - rebuild it with the cube stage"
        ) from exc
    if transform.b != 0 or transform.d != 0:
        raise GridError(f"the cube transform {tuple(transform)[:6]} is rotated; rebuild the cube north-up")
    exp_x = transform.c + transform.a * (np.arange(x.size) + 0.5)
    exp_y = transform.f + transform.e * (np.arange(y.size) + 0.5)
    tol = 1e-6 * max(abs(transform.a), abs(transform.e))
    if not (np.allclose(x, exp_x, atol=tol, rtol=0) and np.allclose(y, exp_y, atol=tol, rtol=0)):
        raise GridError(
            "the cube's x/y coordinates are not the pixel centres of its transform "
            f"{tuple(transform)[:6]}; rebuild the cube"
        )
    if not np.issubdtype(times.dtype, np.datetime64):
        raise GridError(f"the cube's time coordinate has dtype {times.dtype}, expected datetime64")
    return CubeGrid(crs=crs, transform=transform, shape=(y.size, x.size), times=times)


def _fmt_bounds(b: Iterable[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in b) + ")"


def _check_overlap(src_bounds: Bounds, src_crs: CRS, grid: CubeGrid, what: str) -> None:
    """Raise :class:`LabelError` when ``src_bounds`` (in ``src_crs``) miss the grid."""
    try:
        b = rasterio.warp.transform_bounds(src_crs, CRS.from_user_input(grid.crs), *src_bounds, densify_pts=21)
    except Exception as exc:  # noqa: BLE001 - PROJ raises many types for out-of-domain bounds
        raise LabelError(
            f"{what} bounds {_fmt_bounds(src_bounds)} in {src_crs} cannot be transformed to the "
            f"cube CRS {grid.crs} ({exc}); check the labels' CRS"
        ) from exc
    g = grid.bounds
    if not all(np.isfinite(b)) or b[0] >= g[2] or b[2] <= g[0] or b[1] >= g[3] or b[3] <= g[1]:
        raise LabelError(
            f"{what} covers {_fmt_bounds(src_bounds)} in {src_crs} (= {_fmt_bounds(b)} in "
            f"{grid.crs}), which does not overlap the cube bounds {_fmt_bounds(g)} in {grid.crs}; "
            "use labels of the cube's area or check the labels' CRS"
        )


def _source_to_class_ids(
    data: np.ndarray, nodata: float | None, table: ClassTable, codes: LabelCodes, what: str
) -> np.ndarray:
    """Source codes (band 1, native dtype) -> class ids (same shape, uint8, 0 = unlabelled).

    Nodata, NaN/inf and ``codes.ignore_values`` become 0, then ``codes.value_map`` applies
    (without one, the codes must be class ids and 0 stays unlabelled); see
    :mod:`pipeline.reference.codes`.
    """
    arr = np.asarray(data)
    if not np.issubdtype(arr.dtype, np.integer) and not np.issubdtype(arr.dtype, np.floating):
        raise LabelError(f"{what} has dtype {arr.dtype}; label rasters must hold integer codes")
    missing = np.zeros(arr.shape, dtype=bool)
    if np.issubdtype(arr.dtype, np.floating):
        missing |= ~np.isfinite(arr)
    if nodata is not None and np.isfinite(nodata):
        missing |= arr == nodata
    vals = arr[~missing]
    if vals.size and np.issubdtype(arr.dtype, np.floating) and np.any(vals != np.round(vals)):
        bad = np.unique(vals[vals != np.round(vals)])[:5].tolist()
        raise LabelError(
            f"{what} holds non-integer values (e.g. {bad}); label rasters must hold integer codes "
            "(set the raster's nodata value if those are fill values)"
        )
    out = np.zeros(arr.shape, dtype=np.uint8)
    out[~missing] = codes_to_class_ids(vals, table, codes, zero_is_unlabelled=True, what=what)
    return out


def _check_georeferenced(src: rasterio.io.DatasetReader, grid: CubeGrid, what: str) -> None:
    """Raise :class:`LabelError` when ``src`` has no CRS or no geotransform (identity transform)."""
    no_crs, no_transform = src.crs is None, src.transform.is_identity
    if not (no_crs or no_transform):
        return
    left, bottom, right, top = grid.bounds
    on_grid = (
        f"`gdal_translate -a_srs {grid.crs} -a_ullr {left:.10g} {top:.10g} {right:.10g} {bottom:.10g} "
        f"{Path(src.name).name} fixed.tif` if it is on the cube grid ({grid.shape[0]} x {grid.shape[1]} pixels)"
    )
    if no_transform and src.gcps[0]:
        raise LabelError(
            f"{what} is georeferenced by ground control points only (no geotransform); warp it onto "
            f"a grid first, e.g. `gdalwarp -t_srs {grid.crs} -r near {Path(src.name).name} fixed.tif`"
        )
    if no_transform:
        missing = "no CRS and no geotransform" if no_crs else f"a CRS ({src.crs}) but no geotransform"
        raise LabelError(
            f"{what} is not georeferenced ({missing}: rasterio's NotGeoreferencedWarning), so its "
            "pixels cannot be placed on the cube grid; write the labels as a GeoTIFF with their CRS "
            f"and transform, e.g. {on_grid}"
        )
    raise LabelError(
        f"{what} has no CRS; write the labels with their CRS, e.g. `gdal_translate -a_srs {grid.crs} "
        f"{Path(src.name).name} fixed.tif` when they are in the cube's CRS"
    )


def _read_class_ids(
    path: Path, grid: CubeGrid, table: ClassTable, codes: LabelCodes, what: str
) -> tuple[np.ndarray, CRS, Affine, Bounds]:
    """Band 1 of ``path`` as class ids (uint8, 0 = unlabelled) with its CRS, transform and bounds."""
    try:
        with warnings.catch_warnings():
            # a clear LabelError below replaces rasterio's NotGeoreferencedWarning
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                _check_georeferenced(src, grid, what)
                data = _source_to_class_ids(src.read(1), src.nodata, table, codes, what)
                return data, src.crs, src.transform, tuple(src.bounds)
    except rasterio.errors.RasterioIOError as exc:
        raise LabelError(f"cannot read {what} ({exc}); check the file (a GeoTIFF is expected)") from exc


def raster_to_grid(
    path: str | os.PathLike[str], grid: CubeGrid, table: ClassTable, *, codes: LabelCodes | None = None
) -> np.ndarray:
    """Read band 1 of the label raster at ``path`` onto ``grid``.

    The raster holds integer codes in its native dtype and any CRS: its nodata value (and NaN)
    and ``codes.ignore_values`` are unlabelled, ``codes.value_map`` maps the others to class
    ids (without one they must be class ids, 0 = unlabelled); the mapping happens before the
    reprojection. Returns dims (y, x) uint8 class ids on the cube grid, 0 = unlabelled, also
    where the raster does not cover the grid. Raises :class:`LabelError` when the raster cannot
    be read, is not georeferenced (no CRS or no geotransform), does not overlap the cube, or
    holds codes that map to no class of ``table``.
    """
    path = Path(path)
    what = f"label raster {path.name}"
    data, src_crs, src_transform, src_bounds = _read_class_ids(path, grid, table, codes or LabelCodes(), what)
    _check_overlap(src_bounds, src_crs, grid, what)

    dst_crs = CRS.from_user_input(grid.crs)
    resampling = Resampling.nearest
    dflt, _, _ = rasterio.warp.calculate_default_transform(
        src_crs, dst_crs, data.shape[1], data.shape[0], *src_bounds
    )
    src_area = abs(dflt.a * dflt.e - dflt.b * dflt.d)
    dst_area = abs(grid.transform.a * grid.transform.e)
    if src_area < _FINER_AREA_RATIO * dst_area:
        resampling = Resampling.mode
    out = np.zeros(grid.shape, dtype=np.uint8)
    rasterio.warp.reproject(
        source=data,
        destination=out,
        src_transform=src_transform,
        src_crs=src_crs,
        # mode counts "unlabelled" as a value: a cube pixel takes a class only when that
        # class is the most frequent value among its source pixels, unlabelled included.
        src_nodata=None if resampling is Resampling.mode else 0,
        dst_transform=grid.transform,
        dst_crs=dst_crs,
        dst_nodata=0,
        resampling=resampling,
    )
    log.info(
        "%s: %s -> %s with %s resampling, %d labelled pixels",
        what, src_crs, grid.crs, resampling.name, int(np.count_nonzero(out)),
    )
    return out


def rasterize_features(
    geometries: Iterable[object],
    class_ids: Iterable[int],
    grid: CubeGrid,
) -> np.ndarray:
    """Burn ``geometries`` (shapely, already in the grid CRS) with their ``class_ids``.

    Returns dims (y, x) uint8, 0 where no feature covers the pixel centre; later features
    overwrite earlier ones where they overlap.
    """
    shapes = [
        (g, int(c)) for g, c in zip(geometries, class_ids, strict=True) if g is not None and not g.is_empty
    ]
    if not shapes:
        return np.zeros(grid.shape, dtype=np.uint8)
    return rasterio.features.rasterize(
        shapes,
        out_shape=grid.shape,
        transform=grid.transform,
        fill=0,
        all_touched=False,
        dtype=np.uint8,
    )


def check_vector_overlap(bounds: Bounds, crs: CRS, grid: CubeGrid, what: str) -> None:
    """Raise :class:`LabelError` when vector ``bounds`` in ``crs`` do not overlap the grid."""
    _check_overlap(bounds, crs, grid, what)
