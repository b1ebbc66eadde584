"""Describe local rasters as STAC Items and write a catalog folder that the search can serve.

For users whose scenes are files on disk (or an archive without a STAC API): one Item per
acquisition with the projection and raster extensions filled from the files themselves, so
odc-stac can plan the load. The folder layout (``collection.json`` + ``items/*.json``) is what
``catalog.url`` accepts as a local catalog. :func:`index_folder` (``python -m pipeline.index``)
indexes a whole folder of single- or multi-band GeoTIFFs (file names: :mod:`pipeline.stac.scan`),
with asset hrefs relative to each item JSON file.

Each asset carries ``raster:bands`` with one entry per band of its file (``data_type``,
``nodata``, optional ``scale``/``offset``, ``name``) and, when band names are known, ``eo:bands``:
odc-stac learns the band count of a multi-band asset from that list (band N is ``"asset.N"``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pystac
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

from pipeline.atomic import atomic_path, write_text_atomic
from pipeline.errors import AssetReadError, IndexingError
from pipeline.raster.sensors import nodata_json
from pipeline.stac.scan import (
    SceneFile,
    compile_pattern,
    find_rasters,
    group_scenes,
    match_files,
)

log = logging.getLogger(__name__)

PROJ_EXT = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER_EXT = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
EO_EXT = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
COG_TYPE = "image/tiff; application=geotiff"
_STAC_DTYPES = {"complex64": "cfloat32", "complex128": "cfloat64", "complex_int16": "cint16"}


@dataclass(frozen=True)
class BandOptions:
    """Overrides written to every band's ``raster:bands``: nodata, scale, offset; band names of
    multi-band files (``eo:bands`` / ``raster:bands`` ``name``)."""

    nodata: float | None = None
    scale: float | None = None
    offset: float | None = None
    names: tuple[str, ...] = ()


def _raster_meta(path: Path) -> dict[str, Any]:
    """Grid and per-band metadata of one raster; :class:`IndexingError` when not georeferenced."""
    try:
        with rasterio.open(path) as src:
            meta = {
                "crs": src.crs, "transform": src.transform, "shape": (src.height, src.width),
                "bounds": src.bounds, "count": src.count, "dtypes": list(src.dtypes),
                "nodata": list(src.nodatavals), "scales": list(src.scales), "offsets": list(src.offsets),
            }
    except rasterio.errors.RasterioIOError as exc:
        raise AssetReadError(f"cannot open {path} as a raster ({exc}); remove it from the folder or repair it") from exc
    if meta["crs"] is None or meta["transform"] == Affine.identity():
        raise IndexingError(
            f"{path} is not georeferenced (CRS {meta['crs']}, transform {tuple(meta['transform'])[:6]}); give it a "
            f"CRS and geotransform (e.g. gdal_edit.py -a_srs EPSG:32631 -a_ullr ULX ULY LRX LRY {path.name}) or "
            f"move it out of the folder"
        )
    return meta


def _json_nodata(value: float | None, dtype: str) -> float | int | str | None:
    out = nodata_json(value)
    if isinstance(out, float) and dtype.startswith(("int", "uint")) and out.is_integer():
        return int(out)
    return out


def raster_bands(meta: Mapping[str, Any], path: Path, bands: BandOptions) -> list[dict[str, Any]]:
    """``raster:bands`` of one file: one dict per band (data type, nodata, scale/offset, name)."""
    count = meta["count"]
    names = bands.names if count > 1 else ()
    if names and len(names) != count:
        raise IndexingError(f"{path} has {count} bands but --band-names gives {len(names)} ({', '.join(names)}); "
                            f"give one name per band of the multi-band files")
    out = []
    for i in range(count):
        dtype = meta["dtypes"][i]
        entry: dict[str, Any] = {"data_type": _STAC_DTYPES.get(dtype, dtype)}
        nodata = bands.nodata if bands.nodata is not None else meta["nodata"][i]
        if nodata is not None:
            entry["nodata"] = _json_nodata(float(nodata), dtype)
        scale = bands.scale if bands.scale is not None else meta["scales"][i]
        offset = bands.offset if bands.offset is not None else meta["offsets"][i]
        if bands.scale is not None or bands.offset is not None or (scale, offset) != (1.0, 0.0):
            entry["scale"], entry["offset"] = float(scale), float(offset)
        if names:
            entry["name"] = names[i]
        out.append(entry)
    return out


def _proj_fields(meta: Mapping[str, Any]) -> dict[str, Any]:
    epsg = meta["crs"].to_epsg()
    fields: dict[str, Any] = {"proj:code": f"EPSG:{epsg}"} if epsg else {"proj:wkt2": meta["crs"].to_wkt()}
    if epsg:
        fields["proj:epsg"] = epsg  # projection extension v1 readers
    fields["proj:shape"] = list(meta["shape"])
    fields["proj:transform"] = list(meta["transform"])[:6]
    return fields


def item_from_rasters(item_id: str, when: dt.datetime, assets: Mapping[str, str | os.PathLike[str]], *,
                      properties: Mapping[str, Any] | None = None, collection: str | None = None,
                      nodata: Mapping[str, float] | None = None, bands: BandOptions | None = None,
                      href: Callable[[Path], str] | None = None) -> pystac.Item:
    """An Item for rasters ``assets`` (key -> path, single- or multi-band) of one acquisition.

    Projection (``proj:code``, ``proj:shape``, ``proj:transform``) comes from the first asset;
    an asset on another grid carries its own. Each asset gets ``raster:bands`` (one entry per band
    of its file: data type, nodata from the file, ``nodata[key]`` or ``bands.nodata``, scale/offset)
    and, for named bands, ``eo:bands``. Geometry and bbox are the footprint in EPSG:4326.
    ``href(path)`` writes each asset's href (default: its absolute ``file://`` URI). A naive
    ``when`` is taken as UTC.
    """
    paths = {k: Path(v).resolve() for k, v in assets.items()}
    metas = {k: _raster_meta(p) for k, p in paths.items()}
    first = next(iter(metas.values()))
    bounds = transform_bounds(first["crs"], "EPSG:4326", *first["bounds"], densify_pts=21)
    when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    item = pystac.Item(
        id=item_id, geometry=mapping(box(*bounds)), bbox=list(bounds), datetime=when,
        properties=dict(properties or {}), collection=collection,
        stac_extensions=[PROJ_EXT, RASTER_EXT],
    )
    item_proj = _proj_fields(first)
    item.properties.update(item_proj)
    make_href = href or (lambda p: p.as_uri())
    for key, path in paths.items():
        band_opts = bands or BandOptions()
        if nodata and key in nodata:
            band_opts = BandOptions(nodata[key], band_opts.scale, band_opts.offset, band_opts.names)
        rb = raster_bands(metas[key], path, band_opts)
        extra: dict[str, Any] = {"raster:bands": rb}
        if any("name" in b for b in rb):
            extra["eo:bands"] = [{"name": b["name"]} for b in rb]
            if EO_EXT not in item.stac_extensions:
                item.stac_extensions.append(EO_EXT)
        extra.update({k: v for k, v in _proj_fields(metas[key]).items() if item_proj.get(k) != v})
        item.add_asset(key, pystac.Asset(href=make_href(path), media_type=COG_TYPE, roles=["data"],
                                         extra_fields=extra))
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


def relative_href(path: Path, items_dir: Path) -> str:
    """``path`` as a relative URI reference from the folder of the item JSON files (``/``-separated,
    percent-encoded), which the STAC spec resolves against the item file's location."""
    rel = os.path.relpath(path.resolve(), items_dir.resolve())
    return urllib.parse.quote(Path(rel).as_posix(), safe="/")


def solar_noon_utc(day: dt.date, lon: float) -> dt.datetime:
    """UTC time of local solar noon at longitude ``lon`` on ``day``: a date-only acquisition keeps
    its date both in UTC and as the cube's solar day (UTC + lon/15 h) anywhere on Earth."""
    noon = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
    return (noon - dt.timedelta(hours=lon / 15.0)).replace(microsecond=0)


def _check_out(folder: Path, out: Path) -> None:
    if out == folder or out in folder.parents:
        raise IndexingError(f"--out {out} would replace the scene folder {folder} (or a folder holding it); "
                            f"write the catalog to a new folder, e.g. {folder}/catalog")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "collection.json").is_file())):
        raise IndexingError(f"--out {out} exists and is not a catalog folder (no collection.json); refusing to "
                            f"replace it: choose a new or empty folder")


def _item_id(collection: str, when: dt.datetime, scene: str, has_time: bool) -> str:
    stamp = when.strftime("%Y%m%dT%H%M%S" if has_time else "%Y%m%d")
    return "_".join(part for part in (collection, scene, stamp) if part)


def index_folder(folder: str | os.PathLike[str], out: str | os.PathLike[str], *, collection: str | None = None,
                 pattern: str | None = None, date_format: str | None = None, bands: BandOptions | None = None,
                 platform: str | None = None, skip_unmatched: bool = False) -> Path:
    """Index the GeoTIFFs under ``folder`` into the catalog folder ``out`` (written atomically).

    One item per acquisition date (and scene), assets and dates from the file names
    (:mod:`pipeline.stac.scan`), asset hrefs relative to the item JSON files. Date-only
    acquisitions are stamped at local solar noon (:func:`solar_noon_utc`). Raises
    :class:`IndexingError` for files the pattern misses (unless ``skip_unmatched``), duplicate
    date/asset files and files without georeferencing; nothing is written at ``out`` then.
    """
    folder, out = Path(folder).resolve(), Path(out).resolve()
    if not folder.is_dir():
        raise IndexingError(f"scene folder {folder} does not exist; give the folder holding the GeoTIFFs")
    _check_out(folder, out)
    collection = collection or folder.name
    regex = compile_pattern(pattern, date_format)
    files = find_rasters(folder, exclude=[out])
    if not files:
        raise IndexingError(f"no GeoTIFF (*.tif, *.tiff) under {folder}; check the folder")
    matched, unmatched = match_files(files, folder, pattern=regex, date_format=date_format)
    if unmatched:
        listed = ", ".join(str(p.relative_to(folder)) for p in unmatched[:10])
        more = f" and {len(unmatched) - 10} more" if len(unmatched) > 10 else ""
        what = f"--pattern {pattern!r}" if pattern else "a date (YYYY-MM-DD, YYYYMMDD or YYYYDDD) in their names"
        if not skip_unmatched or not matched:
            raise IndexingError(f"{len(unmatched)} file(s) under {folder} do not match {what}: {listed}{more}; fix "
                                f"--pattern (a regex with (?P<date>...) and optionally (?P<asset>...)), move them "
                                f"out, or pass --skip-unmatched to leave them out")
        log.warning("skipping %d file(s) not matching %s: %s%s", len(unmatched), what, listed, more)
    items = [_scene_item(collection, when, scene, group, out / "items", bands, platform)
             for (when, scene), group in group_scenes(matched).items()]
    with atomic_path(out) as tmp:
        write_catalog_folder(tmp, collection, items, description=f"Scenes indexed from {folder} by pipeline.index")
    log.info("indexed %d files into %d items of collection %s at %s", len(matched), len(items), collection, out)
    return out


def _scene_item(collection: str, when: dt.datetime, scene: str, group: Mapping[str, SceneFile], items_dir: Path,
                bands: BandOptions | None, platform: str | None) -> pystac.Item:
    files = {key: f.path for key, f in group.items()}
    has_time = any(f.has_time for f in group.values())
    props = {"platform": platform} if platform else {}
    item = item_from_rasters(_item_id(collection, when, scene, has_time), when, files, properties=props,
                             collection=collection, bands=bands, href=lambda p: relative_href(p, items_dir))
    if not has_time:
        lon = (item.bbox[0] + item.bbox[2]) / 2 if item.bbox else 0.0
        item.datetime = solar_noon_utc(when.date(), lon)
    return item
