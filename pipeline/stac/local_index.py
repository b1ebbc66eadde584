"""Describe local rasters as STAC Items and write a catalog folder that the search can serve.

For users whose scenes are files on disk (or an archive without a STAC API): one Item per
acquisition with the projection and raster extensions filled from the files themselves, so
odc-stac can plan the load. The folder layout (``collection.json`` + ``items/*.json``) is what
``catalog.url`` accepts as a local catalog.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pystac
import rasterio
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

from pipeline.atomic import write_text_atomic
from pipeline.errors import AssetReadError

PROJ_EXT = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER_EXT = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
COG_TYPE = "image/tiff; application=geotiff"


def _raster_meta(path: Path) -> dict[str, Any]:
    try:
        with rasterio.open(path) as src:
            return {
                "crs": src.crs, "transform": src.transform, "shape": (src.height, src.width),
                "bounds": src.bounds, "dtype": src.dtypes[0], "nodata": src.nodata,
            }
    except rasterio.errors.RasterioIOError as exc:
        raise AssetReadError(f"cannot open {path} as a raster ({exc})") from exc


def item_from_rasters(item_id: str, when: dt.datetime, assets: Mapping[str, str | os.PathLike[str]], *,
                      properties: Mapping[str, Any] | None = None, collection: str | None = None,
                      nodata: Mapping[str, float] | None = None) -> pystac.Item:
    """An Item for single-band rasters ``assets`` (key -> path) of one acquisition.

    Projection (``proj:code``, ``proj:shape``, ``proj:transform``) comes from the first asset;
    each asset gets ``raster:bands`` with its data type and nodata (file nodata, or ``nodata``
    overrides). Geometry and bbox are the footprint in EPSG:4326.
    """
    paths = {k: Path(v).resolve() for k, v in assets.items()}
    first = _raster_meta(next(iter(paths.values())))
    bounds = transform_bounds(first["crs"], "EPSG:4326", *first["bounds"], densify_pts=21)
    when = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    item = pystac.Item(
        id=item_id, geometry=mapping(box(*bounds)), bbox=list(bounds), datetime=when,
        properties=dict(properties or {}), collection=collection,
        stac_extensions=[PROJ_EXT, RASTER_EXT],
    )
    epsg = first["crs"].to_epsg()
    item.properties["proj:code"] = f"EPSG:{epsg}" if epsg else None
    if epsg:
        item.properties["proj:epsg"] = epsg
    item.properties["proj:shape"] = list(first["shape"])
    item.properties["proj:transform"] = list(first["transform"])[:6]
    for key, path in paths.items():
        meta = _raster_meta(path)
        nd = (nodata or {}).get(key, meta["nodata"])
        band: dict[str, Any] = {"data_type": meta["dtype"]}
        if nd is not None:
            band["nodata"] = nd
        item.add_asset(key, pystac.Asset(href=path.as_uri(), media_type=COG_TYPE, roles=["data"],
                                         extra_fields={"raster:bands": [band]}))
    return item


def write_catalog_folder(folder: str | os.PathLike[str], collection_id: str, items: Sequence[pystac.Item], *,
                         description: str = "Local scenes") -> Path:
    """Write ``collection.json`` and ``items/<id>.json`` (what ``catalog.url`` accepts as a folder)."""
    folder = Path(folder)
    (folder / "items").mkdir(parents=True, exist_ok=True)
    bboxes = [it.bbox for it in items if it.bbox]
    times = sorted(it.datetime for it in items if it.datetime)
    spatial = [min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes), max(b[3] for b in bboxes)]
    collection = pystac.Collection(
        id=collection_id, description=description,
        extent=pystac.Extent(pystac.SpatialExtent([spatial]), pystac.TemporalExtent([[times[0], times[-1]]])),
        license="other",
    )
    write_text_atomic(folder / "collection.json", json.dumps(collection.to_dict(include_self_link=False), indent=1))
    for item in items:
        item.collection_id = collection_id
        d = item.to_dict(include_self_link=False, transform_hrefs=False)
        d["links"] = [ln for ln in d.get("links", []) if ln.get("rel") not in ("root", "parent", "collection")]
        write_text_atomic(folder / "items" / f"{item.id}.json", json.dumps(d, indent=1))
    return folder
