"""Areas of interest: bbox, vector files, CRS choice, and clear errors on bad geometry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import AoiError
from pipeline.stac.aoi import aoi_from_config, utm_crs

DATES = {"start": "2021-01-01", "end": "2021-12-31"}


def test_utm_zone_of_points() -> None:
    assert utm_crs(112.93, 28.13) == "EPSG:32649"
    assert utm_crs(-106.9, 40.3) == "EPSG:32613"
    assert utm_crs(-39.0, -72.2) == "EPSG:32724"
    assert utm_crs(180.0, 0.0) == "EPSG:32660"


def test_bbox_aoi_defaults_to_utm_and_whole_days() -> None:
    aoi = aoi_from_config("a", {"bbox": [112.9, 28.1, 113.0, 28.2], **DATES})
    assert aoi.crs == "EPSG:32649"
    assert aoi.datetime_range == "2021-01-01T00:00:00Z/2021-12-31T23:59:59Z"
    assert aoi.geometry.bounds == (112.9, 28.1, 113.0, 28.2)


def test_geojson_file_aoi(tmp_path: Path) -> None:
    path = tmp_path / "aoi.geojson"
    ring = [[112.9, 28.1], [113.0, 28.1], [113.0, 28.2], [112.9, 28.1]]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    aoi = aoi_from_config("f", {"geometry": str(path), **DATES})
    assert aoi.geometry.area == pytest.approx(0.005)


def test_vector_file_without_crs(tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    path = tmp_path / "nocrs.gpkg"
    gpd.GeoDataFrame(geometry=[box(0, 0, 1000, 1000)]).to_file(path)
    with pytest.raises(AoiError, match="has no CRS"):
        aoi_from_config("n", {"geometry": str(path), **DATES})


def test_invalid_geometry_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bowtie.geojson"
    bowtie = [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [bowtie]}}]}))
    with pytest.raises(AoiError, match="invalid geometr.*Self-intersection.*Fix geometries"):
        aoi_from_config("b", {"geometry": str(path), **DATES})


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"bbox": [113.0, 28.1, 112.9, 28.2], **DATES}, "min < max"),
        ({"bbox": [28.1, 112.9, 28.2, 113.0], **DATES}, "lon/lat order"),
        ({"bbox": [112.9, 28.1, 113.0, 28.2], "start": "2021-05-01", "end": "2021-01-01"}, "before start"),
        ({"bbox": [112.9, 28.1, 113.0, 28.2], **DATES, "crs": "EPSG:4326"}, "geographic"),
        ({"geometry": "missing.geojson", **DATES}, "does not exist"),
    ],
)
def test_bad_aoi_entries(entry: dict, message: str) -> None:
    with pytest.raises(AoiError, match=message):
        aoi_from_config("x", entry)


def test_automatic_anchor_is_landsat_centres_at_30_m_and_edges_otherwise() -> None:
    from pipeline.raster.load import aoi_geobox
    from pipeline.stac.aoi import aoi_from_config

    # the real WorldCereal patch: a 10 m grid with edges on multiples of 10 m (EPSG:32631)
    aoi = aoi_from_config("be", {"bbox": [3.0192, 50.8121, 3.0283, 50.8178], "start": "2018-01-01",
                                 "end": "2018-12-31", "crs": "EPSG:32631"})
    ten = aoi_geobox(aoi, 10.0)
    assert ten.transform.c % 10 == 0 and ten.transform.f % 10 == 0
    thirty = aoi_geobox(aoi, 30.0)
    assert (thirty.transform.c + 15) % 30 == 0 and (thirty.transform.f + 15) % 30 == 0  # centres on 30 m
    assert aoi_geobox(aoi, 10.0, anchor="center").transform.c % 10 == 5
