"""Zarr stores of the pipeline: atomic writes and validated reads.

Layouts (all stores carry the grid as attrs ``crs`` (e.g. ``"EPSG:32649"``) and
``transform`` (GDAL affine, 6 floats: a, b, c, d, e, f) plus ``y``/``x`` coordinates of pixel
centres in that CRS):

``cube.zarr`` (stage ``pipeline.cube``)
    ``reflectance`` (time, band, y, x) float32, unitless surface reflectance (scale/offset
    applied), NaN where the asset had nodata; cloudy pixels keep their values.
    ``qa`` (time, y, x) uint16, the raw quality asset (0 where missing).
    ``valid`` (time, y, x) bool, True for a clear observation per the QA decoding.
    ``valid_fraction`` (time,) float32, share of valid pixels per date.
``features.zarr`` (stage ``pipeline.features``)
    ``features`` (time, channel, y, x) float16, ``valid`` (time, y, x) bool.
``labels.zarr`` (stage ``pipeline.labels``)
    ``labels`` (time, y, x) uint8 class ids of the class table, 0 = unlabelled (ignored).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import xarray as xr

from pipeline.atomic import atomic_path
from pipeline.errors import GridError, PipelineError

log = logging.getLogger(__name__)

# Band names and item ids are short strings: Zarr v3 stores them as fixed-length UTF-32, which
# zarr-python flags as not yet in the v3 spec; xarray reads them back exactly.
warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")


def write_zarr_atomic(ds: xr.Dataset, path: str | os.PathLike[str], **to_zarr_kwargs: object) -> Path:
    """Write ``ds`` (lazy or in memory) to a Zarr store at ``path`` via a temporary sibling.

    The computation streams chunk by chunk into the temporary store (bounded memory for dask
    inputs); the store is renamed into place only after every chunk and the consolidated
    metadata were written.
    """
    final = Path(path)
    with atomic_path(final) as tmp:
        ds.to_zarr(tmp, mode="w", consolidated=True, **to_zarr_kwargs)  # type: ignore[call-overload]
    log.info("wrote %s", final)
    return final


def open_store(path: str | os.PathLike[str], *, required: tuple[str, ...] = ()) -> xr.Dataset:
    """Open a pipeline Zarr store lazily and check that ``required`` variables are present."""
    p = Path(path)
    if not p.exists():
        raise PipelineError(f"Zarr store {p} does not exist; run the stage that builds it first")
    ds = xr.open_zarr(p, consolidated=None)
    missing = [v for v in required if v not in ds.variables]
    if missing:
        raise PipelineError(
            f"Zarr store {p} lacks {missing}; it was written by another version of the "
            f"pipeline or another stage - delete it and rerun"
        )
    if "crs" not in ds.attrs or "transform" not in ds.attrs:
        raise GridError(f"Zarr store {p} carries no 'crs'/'transform' attrs; rebuild it")
    return ds
