"""STAC Item describing one map output folder (``results/{aoi}/maps/{model}/``).

The item carries the map date, the footprint in lon/lat, the grid (projection extension:
``proj:code``, ``proj:shape``, ``proj:transform``, ``proj:bbox``), one asset per output file
with relative hrefs (the folder can be moved or uploaded as a whole), ``raster:bands`` (dtype,
nodata, unit) and the class table as ``classification:classes`` on the ``classes`` asset.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pystac
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.warp import transform as warp_points

from pipeline.atomic import write_text_atomic
from pipeline.errors import PredictionError
from pipeline.raster.cog import (
    COUNT_NODATA,
    PROBABILITY_NODATA,
    CrsLike,
    TransformLike,
    check_grid,
)
from pipeline.reference.classes import ClassTableLike, as_class_table

log = logging.getLogger(__name__)

COG = str(pystac.MediaType.COG)
QML = "application/xml"


@dataclass(frozen=True)
class MapAsset:
    """File name, media type, roles and title of one output of the predict stage."""

    filename: str
    media_type: str
    roles: tuple[str, ...]
    title: str


MAP_ASSETS: dict[str, MapAsset] = {
    "classes": MapAsset("classes.tif", COG, ("data",), "Land-cover classes (uint8 class ids, 0 = nodata)"),
    "probabilities": MapAsset(
        "probabilities.tif", COG, ("data",), "Class probabilities (uint8 percent, one band per class, 255 = nodata)"
    ),
    "confidence": MapAsset("confidence.tif", COG, ("data", "quality"), "Confidence (uint8 percent, 255 = nodata)"),
    "valid_count": MapAsset(
        "valid_count.tif", COG, ("metadata", "quality"), "Valid observations per pixel (uint16, 65535 = nodata)"
    ),
    "style": MapAsset("classes.qml", QML, ("style", "metadata"), "QGIS style of the classes layer"),
}
"""Asset key -> file of the map folder; the file names are the product's interface."""


def _as_datetime(value: dt.datetime | dt.date | str) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise PredictionError(f"map date {value!r} is not ISO 8601 (e.g. '2021-07-01')") from exc
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _slug(name: str) -> str:
    """A classification ``name`` (letters, digits, ``-``, ``_`` only)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name.strip()).strip("_") or "class"


def footprint_lonlat(
    shape: tuple[int, int], *, crs: CrsLike, transform: TransformLike, densify: int = 16
) -> tuple[dict[str, Any], list[float]]:
    """GeoJSON polygon and bbox (lon/lat, EPSG:4326) of a grid's outer pixel edges.

    Each edge is densified with ``densify`` points so curved projected edges stay inside the
    polygon. Grids crossing the antimeridian are not split.
    """
    crs_obj, aff = check_grid(crs, transform)
    h, w = shape
    t = np.linspace(0.0, 1.0, densify + 1)[:-1]
    cols = np.concatenate([t * w, np.full_like(t, w), (1 - t) * w, np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), (1 - t) * h])
    xs = aff.a * cols + aff.b * rows + aff.c
    ys = aff.d * cols + aff.e * rows + aff.f
    lon, lat = warp_points(crs_obj, "EPSG:4326", list(xs), list(ys))
    ring = [[round(x, 7), round(y, 7)] for x, y in zip(lon, lat, strict=True)]
    ring.append(ring[0])
    bbox = [min(lon), min(lat), max(lon), max(lat)]
    return {"type": "Polygon", "coordinates": [ring]}, [round(v, 7) for v in bbox]


def _raster_bands(key: str, n_classes: int, res: float) -> list[RasterBand]:
    if key == "classes":
        return [RasterBand.create(nodata=0, data_type=DataType.UINT8, spatial_resolution=res)]
    if key in ("probabilities", "confidence"):
        n = n_classes if key == "probabilities" else 1
        return [
            RasterBand.create(nodata=PROBABILITY_NODATA, data_type=DataType.UINT8, unit="percent",
                              spatial_resolution=res)
            for _ in range(n)
        ]
    return [RasterBand.create(nodata=COUNT_NODATA, data_type=DataType.UINT16, spatial_resolution=res)]


def map_stac_item(
    out_dir: str | os.PathLike[str],
    *,
    item_id: str,
    map_datetime: dt.datetime | dt.date | str,
    crs: CrsLike,
    transform: TransformLike,
    shape: tuple[int, int],
    class_table: ClassTableLike,
    assets: Mapping[str, str] | None = None,
    start_datetime: dt.datetime | dt.date | str | None = None,
    end_datetime: dt.datetime | dt.date | str | None = None,
    properties: Mapping[str, Any] | None = None,
) -> pystac.Item:
    """Build the STAC Item of a map folder whose rasters are already written.

    Args:
        out_dir: the map folder; every asset file must exist in it.
        item_id: e.g. ``"{aoi}-{model}"``.
        map_datetime: the date the map represents (naive values are taken as UTC).
        crs, transform, shape: the grid of the rasters (dims (y, x), transform a..f).
        class_table: classes of the ``classes`` asset (see :func:`pipeline.reference.classes.as_class_table`).
        assets: asset key -> file name relative to ``out_dir``; default: every entry of
            :data:`MAP_ASSETS`. Keys of :data:`MAP_ASSETS` get its media type, roles, title.
        start_datetime, end_datetime: optional period of the input series.
        properties: extra item properties (e.g. ``{"pipeline:model": "semi_lstm"}``).

    Raises:
        PredictionError: an asset file is missing or the grid is unusable.
    """
    folder = Path(out_dir)
    table = as_class_table(class_table)
    crs_obj, aff = check_grid(crs, transform)
    files = dict(assets) if assets is not None else {k: a.filename for k, a in MAP_ASSETS.items()}
    missing = [f for f in files.values() if not (folder / f).is_file()]
    if missing:
        raise PredictionError(f"map folder {folder} lacks {missing}; write the rasters and style before the item")
    geometry, bbox = footprint_lonlat(shape, crs=crs_obj, transform=aff)
    props: dict[str, Any] = dict(properties or {})
    if start_datetime is not None:
        props["start_datetime"] = _as_datetime(start_datetime).isoformat().replace("+00:00", "Z")
    if end_datetime is not None:
        props["end_datetime"] = _as_datetime(end_datetime).isoformat().replace("+00:00", "Z")
    item = pystac.Item(item_id, geometry, bbox, _as_datetime(map_datetime), props)

    proj = ProjectionExtension.ext(item, add_if_missing=True)
    auth = crs_obj.to_authority()
    h, w = shape
    x0, y0 = aff.c, aff.f
    x1, y1 = aff.a * w + aff.b * h + aff.c, aff.d * w + aff.e * h + aff.f
    proj.apply(
        code=f"{auth[0]}:{auth[1]}" if auth else None,
        wkt2=None if auth else crs_obj.to_wkt(),
        shape=[int(h), int(w)],
        transform=[float(v) for v in tuple(aff)[:6]],
        bbox=[min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)],
    )
    res = float(abs(aff.a))
    for key, filename in files.items():
        meta = MAP_ASSETS.get(key)
        asset = pystac.Asset(
            href=filename,
            media_type=meta.media_type if meta else None,
            roles=list(meta.roles) if meta else ["data"],
            title=meta.title if meta else key,
        )
        item.add_asset(key, asset)
        if meta and meta.media_type == COG:
            RasterExtension.ext(asset, add_if_missing=True).apply(_raster_bands(key, len(table), res))
    if "classes" in files:
        ClassificationExtension.ext(item.assets["classes"], add_if_missing=True).apply(
            classes=[
                Classification.create(value=e.id, name=_slug(e.name), title=e.name,
                                      description=e.name, color_hint=e.hex)
                for e in table
            ]
        )
    return item


def write_map_item(item: pystac.Item, path: str | os.PathLike[str]) -> Path:
    """Write ``item`` as JSON to ``path`` atomically (relative asset hrefs kept as given)."""
    final = Path(path)
    doc = item.to_dict(include_self_link=False, transform_hrefs=False)
    write_text_atomic(final, json.dumps(doc, indent=2) + "\n")
    log.info("wrote %s", final)
    return final
