"""Bring reference labels onto the cube grid: reproject label rasters, rasterize vectors.

Every function returns class-id arrays on the cube grid: dims (y, x), uint8, ``0`` =
unlabelled (ignored by training and evaluation). Labels in another CRS are reprojected;
raster labels are resampled with *nearest* when the label raster is as coarse as or coarser
than the cube grid, and with *mode* when it is finer (the most frequent value among the source
pixels of a cube pixel, "unlabelled" counted as a value, so mostly unlabelled pixels stay 0).
Vector features are burnt where they cover a pixel centre (``rasterio.features.rasterize``,
``all_touched=False``); where features overlap, the later one in file order wins.
"""

from __future__ import annotations

import logging
import os
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

from pipeline.errors import GridError, LabelError
from pipeline.reference.classes import ClassTable

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


def check_class_ids(values: np.ndarray, table: ClassTable, *, what: str) -> None:
    """Raise :class:`LabelError` naming the ids in ``values`` (non-zero) absent from ``table``."""
    present = np.unique(values)
    present = present[present != 0]
    unknown = sorted(int(v) for v in np.setdiff1d(present, np.asarray(table.ids())))
    if unknown:
        raise LabelError(
            f"{what} holds class ids {unknown} that are not in the class table (ids {table.ids()}); "
            "add them to the classes config or recode the labels"
        )


def _source_to_uint8(data: np.ndarray, nodata: float | None, what: str) -> np.ndarray:
    """Label values as uint8 with 0 = unlabelled (source nodata and NaN become 0)."""
    arr = np.asarray(data)
    missing = np.zeros(arr.shape, dtype=bool)
    if np.issubdtype(arr.dtype, np.floating):
        missing |= ~np.isfinite(arr)
    if nodata is not None and np.isfinite(nodata):
        missing |= arr == nodata
    elif nodata is not None:  # NaN nodata
        missing |= np.isnan(arr.astype(np.float64))
    vals = arr[~missing]
    if vals.size and np.issubdtype(arr.dtype, np.floating) and np.any(vals != np.round(vals)):
        raise LabelError(f"{what} holds non-integer values; label rasters must hold integer class ids")
    if vals.size and (vals.min() < 0 or vals.max() > 255):
        bad = sorted({int(v) for v in np.unique(vals) if v < 0 or v > 255})[:10]
        raise LabelError(
            f"{what} holds values {bad} outside 0..255; class ids are 1..254 with 0 = unlabelled "
            "(set the raster's nodata value if those are fill values)"
        )
    out = np.where(missing, 0, arr)
    return out.astype(np.uint8)


def raster_to_grid(path: str | os.PathLike[str], grid: CubeGrid, table: ClassTable) -> np.ndarray:
    """Read band 1 of the label raster at ``path`` onto ``grid``.

    The raster holds class ids (integer, 0 and its nodata value = unlabelled) in any CRS.
    Returns dims (y, x) uint8 class ids on the cube grid, 0 = unlabelled. Raises
    :class:`LabelError` when the raster cannot be read, has no CRS, does not overlap the
    cube, or holds ids that are not in ``table``.
    """
    path = Path(path)
    what = f"label raster {path.name}"
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise LabelError(f"{what} has no CRS; write the labels with their CRS (e.g. EPSG:32649)")
            src_crs, src_transform, src_bounds = src.crs, src.transform, tuple(src.bounds)
            data = _source_to_uint8(src.read(1), src.nodata, what)
    except rasterio.errors.RasterioIOError as exc:
        raise LabelError(f"cannot read {what} ({exc}); check the file") from exc
    check_class_ids(data, table, what=what)
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
