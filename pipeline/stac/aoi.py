"""Areas of interest: a lon/lat bbox or a vector file, a date range, and the grid CRS.

Geometries are held in EPSG:4326 (lon, lat degrees) for searching and reprojected to the grid
CRS (a UTM zone by default) for loading.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyproj import CRS
from shapely.geometry import box, mapping
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from pipeline.errors import AoiError


@dataclass(frozen=True)
class Aoi:
    """One area of interest.

    ``geometry`` is a (multi)polygon in EPSG:4326; ``crs`` the grid CRS of its cube
    (``"EPSG:326xx"``/``"EPSG:327xx"`` UTM by default); ``start``/``end`` inclusive dates.
    """

    name: str
    geometry: BaseGeometry
    start: dt.date
    end: dt.date
    crs: str

    @property
    def datetime_range(self) -> str:
        """The STAC ``datetime`` interval covering whole days, e.g. ``2021-01-01/2021-12-31``."""
        return f"{self.start.isoformat()}T00:00:00Z/{self.end.isoformat()}T23:59:59Z"

    @property
    def geojson(self) -> dict[str, Any]:
        """The geometry as a GeoJSON mapping (EPSG:4326)."""
        return dict(mapping(self.geometry))


def utm_crs(lon: float, lat: float) -> str:
    """The WGS 84 / UTM zone CRS (``EPSG:326zz`` north, ``EPSG:327zz`` south) of a point."""
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise AoiError(f"point ({lon}, {lat}) is not a lon/lat position; AOI bboxes are in EPSG:4326 degrees")
    zone = min(int((lon + 180) // 6) + 1, 60)
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def _parse_date(value: str, *, key: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise AoiError(f"AOI '{name}': {key} {value!r} is not a date; write YYYY-MM-DD") from exc


def read_geometry_file(path: str | os.PathLike[str], *, name: str) -> BaseGeometry:
    """Read a vector file's polygons, dissolve them and return the union in EPSG:4326."""
    import geopandas as gpd

    p = Path(path)
    if not p.exists():
        raise AoiError(f"AOI '{name}': geometry file {p} does not exist; fix aois.{name}.geometry")
    try:
        frame = gpd.read_file(p)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a user-facing file problem
        raise AoiError(f"AOI '{name}': cannot read {p} as a vector file ({exc})") from exc
    if frame.empty:
        raise AoiError(f"AOI '{name}': {p} holds no feature; draw the AOI polygon first")
    if frame.crs is None:
        raise AoiError(
            f"AOI '{name}': {p} has no CRS; save it with one (GeoJSON is EPSG:4326 by definition, "
            f"for other formats set the layer CRS in QGIS/ogr2ogr -a_srs)"
        )
    invalid = frame[~frame.geometry.is_valid]
    if len(invalid):
        reason = explain_validity(invalid.geometry.iloc[0])
        raise AoiError(
            f"AOI '{name}': {p} has {len(invalid)} invalid geometr{'y' if len(invalid) == 1 else 'ies'} "
            f"({reason}); repair it (QGIS 'Fix geometries' or shapely make_valid) and retry"
        )
    if not all(t in ("Polygon", "MultiPolygon") for t in frame.geom_type):
        raise AoiError(f"AOI '{name}': {p} must hold polygons, found {sorted(set(frame.geom_type))}")
    return frame.to_crs("EPSG:4326").geometry.union_all()


def aoi_from_config(name: str, entry: dict[str, Any], *, base_dir: str | os.PathLike[str] = ".") -> Aoi:
    """Build an :class:`Aoi` from one validated ``aois.<name>`` config entry."""
    if "bbox" in entry and "geometry" in entry:
        raise AoiError(f"AOI '{name}': give either bbox or geometry, not both")
    if "bbox" in entry:
        minx, miny, maxx, maxy = (float(v) for v in entry["bbox"])
        if not (minx < maxx and miny < maxy):
            raise AoiError(f"AOI '{name}': bbox {entry['bbox']} must be [min_lon, min_lat, max_lon, max_lat] with min < max")
        if not (-90 <= miny <= 90 and -90 <= maxy <= 90):
            raise AoiError(f"AOI '{name}': bbox latitudes {miny}, {maxy} outside [-90, 90]; is the bbox in lon/lat order?")
        geometry: BaseGeometry = box(minx, miny, maxx, maxy)
    elif "geometry" in entry:
        path = Path(entry["geometry"])
        geometry = read_geometry_file(path if path.is_absolute() else Path(base_dir) / path, name=name)
    else:
        raise AoiError(f"AOI '{name}': needs a bbox or a geometry file")
    start = _parse_date(entry["start"], key="start", name=name)
    end = _parse_date(entry["end"], key="end", name=name)
    if end < start:
        raise AoiError(f"AOI '{name}': end {end} is before start {start}")
    crs = entry.get("crs")
    if crs:
        try:
            parsed = CRS.from_user_input(crs)
        except Exception as exc:  # noqa: BLE001
            raise AoiError(f"AOI '{name}': crs {crs!r} is not a CRS pyproj knows (e.g. EPSG:32649)") from exc
        if not parsed.is_projected:
            raise AoiError(f"AOI '{name}': crs {crs!r} is geographic; use a projected CRS in metres (e.g. UTM)")
        epsg = parsed.to_epsg()
        crs = f"EPSG:{epsg}" if epsg else parsed.to_wkt()
    else:
        c = geometry.centroid
        crs = utm_crs(c.x, c.y)
    return Aoi(name=name, geometry=geometry, start=start, end=end, crs=crs)
