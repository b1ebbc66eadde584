"""STAC Items and Collection of the demo, in the Planetary Computer ``landsat-c2-l2`` structure.

Pure dict builders; the hrefs they are given are absolute local paths (the demo has no
server). Items carry the projection extension (``proj:epsg`` and ``proj:code``, shape,
transform, bbox) so that odc-stac can load them without being told the grid.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pipeline.synthetic.qa import QA_NODATA, QA_PIXEL_BITFIELDS, SR_NODATA, SR_OFFSET, SR_SCALE
from pipeline.synthetic.schedule import Acquisition
from pipeline.synthetic.spec import PIXEL_SIZE, DemoGrid, DemoSpec

COLLECTION_ID = "landsat-c2-l2"
STAC_VERSION = "1.0.0"
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
DOI = "10.5066/P9OGBGM6"
ITEM_EXTENSIONS = [
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://landsat.usgs.gov/stac/landsat-extension/v1.1.1/schema.json",
    "https://stac-extensions.github.io/classification/v1.0.0/schema.json",
    "https://stac-extensions.github.io/scientific/v1.0.0/schema.json",
]
COLLECTION_EXTENSIONS = [
    "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "https://stac-extensions.github.io/scientific/v1.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
    "https://stac-extensions.github.io/classification/v1.0.0/schema.json",
]

# asset key -> (file suffix, OLI band, centre wavelength um, FWHM um, eo description, title, long name)
SR_ASSETS: dict[str, tuple[str, str, float, float, str, str, str]] = {
    "coastal": ("SR_B1", "OLI_B1", 0.44, 0.02, "Coastal/Aerosol", "Coastal/Aerosol Band", "Coastal/Aerosol Band"),
    "blue": ("SR_B2", "OLI_B2", 0.48, 0.06, "Visible blue", "Blue Band", "Blue Band"),
    "green": ("SR_B3", "OLI_B3", 0.56, 0.06, "Visible green", "Green Band", "Green Band"),
    "red": ("SR_B4", "OLI_B4", 0.65, 0.04, "Visible red", "Red Band", "Red Band"),
    "nir08": ("SR_B5", "OLI_B5", 0.87, 0.03, "Near infrared", "Near Infrared Band 0.8", "Near Infrared Band 0.8"),
    "swir16": ("SR_B6", "OLI_B6", 1.61, 0.09, "Short-wave infrared", "Short-wave Infrared Band 1.6",
               "Short-wave Infrared Band 1.6"),
    "swir22": ("SR_B7", "OLI_B7", 2.2, 0.19, "Short-wave infrared", "Short-wave Infrared Band 2.2",
               "Short-wave Infrared Band 2.2"),
}
"""The 7 surface reflectance assets, in band order."""
QA_SUFFIX = "QA_PIXEL"


def item_id(acq: Acquisition, spec: DemoSpec) -> str:
    """Planetary Computer style id, e.g. ``LC08_L2SP_123040_20210105_02_T1``."""
    sat = "LC08" if acq.platform == "landsat-8" else "LC09"
    return f"{sat}_L2SP_{spec.wrs_path:03d}{spec.wrs_row:03d}_{acq.date:%Y%m%d}_02_T1"


def scene_id(acq: Acquisition, spec: DemoSpec) -> str:
    """USGS scene id, e.g. ``LC81230402021005LGN00``."""
    sat = "LC8" if acq.platform == "landsat-8" else "LC9"
    return f"{sat}{spec.wrs_path:03d}{spec.wrs_row:03d}{acq.date:%Y%j}LGN00"


def asset_filename(iid: str, key: str) -> str:
    """File name of asset ``key`` (an SR band or ``qa_pixel``) of item ``iid``."""
    suffix = QA_SUFFIX if key == "qa_pixel" else SR_ASSETS[key][0]
    return f"{iid}_{suffix}.TIF"


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sr_asset(key: str, href: str | None) -> dict[str, Any]:
    suffix, name, wl, fwhm, desc, title, long = SR_ASSETS[key]
    asset: dict[str, Any] = {} if href is None else {"href": href}
    asset.update({
        "type": COG_TYPE,
        "roles": ["data", "reflectance"],
        "title": title,
        "eo:bands": [{"name": name, "common_name": key, "description": desc,
                      "center_wavelength": wl, "full_width_half_max": fwhm}],
        "description": f"Collection 2 Level-2 {long} ({suffix}) Surface Reflectance",
        "raster:bands": [{"scale": SR_SCALE, "nodata": SR_NODATA, "offset": SR_OFFSET,
                          "data_type": "uint16", "spatial_resolution": int(PIXEL_SIZE)}],
    })
    return asset


def _qa_asset(href: str | None) -> dict[str, Any]:
    asset: dict[str, Any] = {} if href is None else {"href": href}
    asset.update({
        "type": COG_TYPE,
        "roles": ["cloud", "cloud-shadow", "snow-ice", "water-mask"],
        "title": "Pixel Quality Assessment Band",
        "description": "Collection 2 Level-1 Pixel Quality Assessment Band (QA_PIXEL)",
        "classification:bitfields": QA_PIXEL_BITFIELDS,
        "raster:bands": [{"unit": "bit index", "nodata": QA_NODATA, "data_type": "uint16",
                          "spatial_resolution": int(PIXEL_SIZE)}],
    })
    return asset


def footprint_lonlat(grid: DemoGrid) -> list[list[float]]:
    """Closed ring [lon, lat] of the grid's corners (NW, SW, SE, NE, NW) in EPSG:4326."""
    from pyproj import Transformer

    minx, miny, maxx, maxy = grid.bounds
    tr = Transformer.from_crs(f"EPSG:{grid.epsg}", "EPSG:4326", always_xy=True)
    corners = [(minx, maxy), (minx, miny), (maxx, miny), (maxx, maxy)]
    ring = [[float(v) for v in tr.transform(x, y)] for x, y in corners]
    return [*ring, ring[0]]


def build_item(
    acq: Acquisition, spec: DemoSpec, grid: DemoGrid, *, asset_hrefs: dict[str, str],
    cloud_cover: float, cloud_cover_land: float, item_href: str, collection_href: str,
) -> dict[str, Any]:
    """The STAC Item (a JSON-ready dict) of one demo date.

    Args:
        acq: the acquisition.
        spec, grid: demo options and grid.
        asset_hrefs: asset key -> absolute path of its COG (7 SR bands and ``qa_pixel``).
        cloud_cover, cloud_cover_land: percent cloud over the AOI / its land.
        item_href, collection_href: absolute paths of the item and collection JSON files.
    """
    iid = item_id(acq, spec)
    minx, miny, maxx, maxy = grid.bounds
    t = grid.transform
    props: dict[str, Any] = {
        "gsd": int(PIXEL_SIZE),
        "created": _iso(acq.datetime + dt.timedelta(days=6)),
        "sci:doi": DOI,
        "datetime": _iso(acq.datetime),
        "platform": acq.platform,
        "proj:epsg": grid.epsg,
        "proj:code": grid.crs,
        "proj:shape": list(grid.shape),
        "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
        "proj:bbox": [minx, miny, maxx, maxy],
        "description": "Landsat Collection 2 Level-2 (synthetic offline demo)",
        "instruments": ["oli", "tirs"],
        "eo:cloud_cover": cloud_cover,
        "view:off_nadir": 0,
        "landsat:wrs_row": f"{spec.wrs_row:03d}",
        "landsat:scene_id": scene_id(acq, spec),
        "landsat:wrs_path": f"{spec.wrs_path:03d}",
        "landsat:wrs_type": "2",
        "view:sun_azimuth": acq.sun_azimuth,
        "landsat:correction": "L2SP",
        "view:sun_elevation": acq.sun_elevation,
        "landsat:cloud_cover_land": cloud_cover_land,
        "landsat:collection_number": "02",
        "landsat:collection_category": "T1",
    }
    assets = {key: _sr_asset(key, asset_hrefs[key]) for key in SR_ASSETS}
    assets["qa_pixel"] = _qa_asset(asset_hrefs["qa_pixel"])
    ring = footprint_lonlat(grid)
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": list(ITEM_EXTENSIONS),
        "id": iid,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": list(grid.bbox_lonlat),
        "properties": props,
        "links": [
            {"rel": "collection", "type": "application/json", "href": collection_href},
            {"rel": "parent", "type": "application/json", "href": collection_href},
            {"rel": "root", "type": "application/json", "href": collection_href},
            {"rel": "self", "type": "application/geo+json", "href": item_href},
            {"rel": "cite-as", "href": f"https://doi.org/{DOI}", "title": "Landsat 8-9 OLI/TIRS Collection 2 Level-2"},
        ],
        "assets": assets,
        "collection": COLLECTION_ID,
    }


def build_collection(
    items: list[dict[str, Any]], *, collection_href: str, item_hrefs: list[str],
) -> dict[str, Any]:
    """The ``landsat-c2-l2`` Collection (JSON-ready dict) holding ``items``.

    Extent = union of the item bboxes and first..last datetimes; ``item_assets`` describe the
    7 SR bands and ``qa_pixel``; links point to every item file (absolute paths).
    """
    if not items:
        raise ValueError("a collection needs at least one item")
    bboxes = [it["bbox"] for it in items]
    bbox = [min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes), max(b[3] for b in bboxes)]
    times = sorted(it["properties"]["datetime"] for it in items)
    item_assets = {key: _sr_asset(key, None) for key in SR_ASSETS}
    item_assets["qa_pixel"] = _qa_asset(None)
    links: list[dict[str, Any]] = [
        {"rel": "root", "type": "application/json", "href": collection_href},
        {"rel": "self", "type": "application/json", "href": collection_href},
        {"rel": "cite-as", "href": f"https://doi.org/{DOI}", "title": "Landsat 8-9 OLI/TIRS Collection 2 Level-2"},
    ]
    links += [{"rel": "item", "type": "application/geo+json", "href": h} for h in item_hrefs]
    return {
        "type": "Collection",
        "id": COLLECTION_ID,
        "stac_version": STAC_VERSION,
        "stac_extensions": list(COLLECTION_EXTENSIONS),
        "title": "Landsat Collection 2 Level-2 (synthetic offline demo)",
        "description": (
            "Synthetic Landsat 8/9 Collection 2 Level-2 surface reflectance time series generated by "
            "pipeline.synthetic for offline runs and tests, in the structure of the Planetary Computer "
            "landsat-c2-l2 collection. The pixels are simulated, not observed."
        ),
        "license": "proprietary",
        "keywords": ["Landsat", "Synthetic", "Reflectance", "Demo"],
        "providers": [{"name": "semi-lstm-landcover demo generator", "roles": ["producer", "processor"]}],
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [[times[0], times[-1]]]}},
        "summaries": {
            "gsd": [int(PIXEL_SIZE)],
            "sci:doi": [DOI],
            "platform": sorted({it["properties"]["platform"] for it in items}),
            "instruments": ["oli", "tirs"],
            "view:off_nadir": {"minimum": 0, "maximum": 0},
            "eo:bands": [_sr_asset(k, None)["eo:bands"][0] for k in SR_ASSETS],
        },
        "item_assets": item_assets,
        "links": links,
    }
