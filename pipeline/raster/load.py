"""Loading frozen STAC items onto one grid as a lazy reflectance cube (odc-stac + dask).

Result layout: see :mod:`pipeline.raster.zarr_io` (``cube.zarr``).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import odc.stac
import pystac
import rasterio.features
import xarray as xr
from odc.geo.geobox import AnchorEnum, GeoBox
from odc.geo.geom import Geometry

from pipeline.config import reject_unknown
from pipeline.errors import CubeError
from pipeline.raster.gdal_env import url_signer
from pipeline.raster.qa import invalid_mask
from pipeline.raster.sensors import (
    QaOptions,
    Scaling,
    SensorOptions,
    band_index_problems,
    missing_assets,
    nodata_json,
    resolve_scaling,
)
from pipeline.stac.aoi import Aoi
from pipeline.timegrid.grid import check_grid_options

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CubeOptions:
    """The ``cube`` config section (see the schema)."""

    resolution: float = 30.0
    groupby: Literal["solar_day", "time"] = "solar_day"
    resampling: Literal["nearest", "bilinear", "cubic", "average"] = "nearest"
    chunk: int = 512
    on_error: Literal["raise", "skip"] = "raise"
    min_valid_fraction: float = 0.0
    anchor: Literal["auto", "center", "edge"] = "auto"
    period: str | None = "16D"  # regular time grid (pipeline.timegrid); None = one step per acquisition
    composite: Literal["median", "mean", "max_ndvi", "best"] = "median"
    fill: Literal["linear", "none"] = "linear"

    def __post_init__(self) -> None:
        check_grid_options(self.period, self.composite, self.fill)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> CubeOptions:
        """Build from the ``cube`` config section; unknown keys raise ConfigError."""
        reject_unknown(options, set(cls.__dataclass_fields__), section="cube")
        return cls(**options)


def aoi_geobox(aoi: Aoi, resolution: float, *, anchor: Literal["auto", "center", "edge"] = "auto") -> GeoBox:
    """The AOI's pixel grid: its bounds in ``aoi.crs`` snapped outward to ``resolution``.

    ``anchor="auto"`` (default) is ``"center"`` at 30 m and ``"edge"`` otherwise (Sentinel-2 and
    most 10/20 m products have pixel edges on multiples of the resolution: a centre anchor would
    shift every pixel by half a pixel and add a row and a column).
    ``anchor="center"`` puts pixel centres on multiples of the resolution, which is the native
    Landsat grid (scene origins at 15 m mod 30 m): pixels are then copied, not resampled.
    ``"edge"`` puts pixel edges on multiples of the resolution.
    """
    geom = Geometry(aoi.geometry, crs="EPSG:4326").to_crs(aoi.crs)
    if anchor == "auto":  # Landsat's 30 m grid has centres on multiples of 30 m; 10/20/60 m grids, edges
        anchor = "center" if float(resolution) == 30.0 else "edge"
    snap = AnchorEnum.CENTER if anchor == "center" else AnchorEnum.EDGE
    return GeoBox.from_geopolygon(geom, resolution=resolution, crs=aoi.crs, anchor=snap)


def aoi_pixels(aoi: Aoi, geobox: GeoBox) -> np.ndarray:
    """Bool (y, x): pixels whose centre lies inside the AOI polygon."""
    geom = Geometry(aoi.geometry, crs="EPSG:4326").to_crs(geobox.crs)
    return rasterio.features.rasterize(
        [(geom.geom, 1)], out_shape=geobox.shape, transform=geobox.transform, fill=0, dtype="uint8"
    ).astype(bool)


def check_items(items: list[pystac.Item], sensor: SensorOptions, *, on_error: str) -> tuple[list[pystac.Item], list[str]]:
    """Drop (``skip``) or reject (``raise``) items lacking assets, or bands of multi-band assets,
    that the sensor needs."""
    kept, skipped = [], []
    for item in items:
        missing = missing_assets(item, sensor)
        problems = band_index_problems(item, sensor)
        if not missing and not problems:
            kept.append(item)
            continue
        if missing:
            qa = " / sensor.qa.asset (or sensor.qa: null when the catalog has no quality band)" if sensor.qa else ""
            msg = (f"item {item.id} lacks assets {missing} (it has {sorted(item.assets)}); fix sensor.bands{qa} "
                   f"for this collection (band N of a multi-band asset: {{asset: KEY, band: N}})")
        else:
            msg = "; ".join(problems)
        if on_error == "raise":
            raise CubeError(msg + ", or set cube.on_error: skip to leave such items out")
        log.warning("skipping: %s", msg)
        skipped.append(f"{item.id}: missing assets {missing}" if missing else f"{item.id}: {problems[0]}")
    if not kept:
        raise CubeError("no item has every asset the sensor section asks for; " + "; ".join(skipped[:3]))
    return kept, skipped


def stac_config(items: list[pystac.Item], sensor: SensorOptions, scaling: dict[str, Scaling]) -> dict[str, Any]:
    """odc-stac ``stac_cfg`` supplying nodata for bands whose items do not publish it.

    A multi-band asset is configured as ``"<asset>.*"`` (a fallback under its ``raster:bands``):
    configuring ``"<asset>"`` itself would make odc-stac read it as a one-band asset.
    """
    assets: dict[str, Any] = {}
    multi = sensor.multiband_assets
    for band, src in sensor.bands.items():
        nodata = scaling[band].nodata
        if nodata is None:
            continue
        key = f"{src.asset}.*" if src.asset in multi else src.asset
        assets.setdefault(key, {"nodata": nodata})
    if sensor.qa is not None and sensor.qa.nodata is not None:
        assets[sensor.qa.asset] = {"nodata": sensor.qa.nodata}
    collections = {it.collection_id or "*" for it in items}
    return {c: {"assets": assets} for c in collections | {"*"}}


def solar_day(item: pystac.Item) -> dt.date:
    """Local solar date of an acquisition (UTC time shifted by the item's centre longitude)."""
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise CubeError(f"item {item.id} has no datetime")
    bbox = item.bbox or [0.0, 0.0, 0.0, 0.0]
    lon = (bbox[0] + bbox[2]) / 2
    return (when + dt.timedelta(hours=lon / 15.0)).date()


def load_raw(items: list[pystac.Item], geobox: GeoBox, sensor: SensorOptions, scaling: dict[str, Scaling],
             options: CubeOptions, *, signing: Literal["none", "planetary_computer"] = "none") -> xr.Dataset:
    """Lazy DN cube: one variable per asset, dims (time, y, x), native dtypes, nodata from STAC."""
    resampling: dict[str, str] = {"*": options.resampling}
    if sensor.qa is not None:
        resampling[sensor.qa.asset] = "nearest"
    try:
        return odc.stac.load(
            items,
            bands=sensor.load_names,
            geobox=geobox,
            groupby=options.groupby,
            resampling=resampling,
            chunks={"time": 1, "y": options.chunk, "x": options.chunk},
            stac_cfg=stac_config(items, sensor, scaling),
            patch_url=url_signer(signing),
            fail_on_error=True,
        )
    except Exception as exc:  # noqa: BLE001 - odc-stac metadata errors are user-fixable item problems
        raise CubeError(f"cannot plan the load of {len(items)} items onto the AOI grid: {exc}") from exc


def missing_dn(dn: xr.DataArray, nodata: float | None) -> xr.DataArray:
    """Bool mask of ``dn`` (any dims) where it holds ``nodata``; NaN nodata (which never equals
    itself) matches NaN DN, and NaN DN is always missing."""
    isnan = dn.isnull() if dn.dtype.kind == "f" else xr.zeros_like(dn, dtype=bool)
    if nodata is None or math.isnan(nodata):
        return isnan
    return isnan | (dn == nodata)


def qa_validity(raw: xr.Dataset, qa_opts: QaOptions) -> tuple[xr.DataArray, xr.DataArray]:
    """``(qa, invalid)`` (time, y, x): the QA asset as uint16 (0 where missing) and its invalid mask."""
    qa_raw = raw[qa_opts.asset]
    qa = qa_raw.fillna(0).astype("uint16") if qa_raw.dtype.kind == "f" else qa_raw.astype("uint16")
    invalid = invalid_mask(qa, decode=qa_opts.decode, bits=qa_opts.invalid_bits,
                           values=qa_opts.invalid_values, nodata=qa_opts.nodata)
    return qa, invalid


def to_cube(raw: xr.Dataset, sensor: SensorOptions, scaling: dict[str, Scaling], aoi_mask: np.ndarray) -> xr.Dataset:
    """Turn a DN dataset into the cube layout (lazy).

    ``reflectance`` (time, band, y, x) float32 = DN * scale + offset, NaN where DN == nodata (or
    is NaN); ``qa`` (time, y, x) uint16, only when the sensor has a quality band
    (``sensor.qa``); ``valid`` (time, y, x) bool = QA says clear (when there is QA), all bands
    finite, inside the AOI polygon; ``valid_fraction`` (time,) share of valid AOI pixels.
    """
    layers = []
    for band, src in sensor.bands.items():
        s = scaling[band]
        dn = raw[src.name]
        refl = dn.astype("float32") * np.float32(s.scale) + np.float32(s.offset)
        layers.append(refl.where(~missing_dn(dn, s.nodata)).assign_coords(band=band))
    reflectance = xr.concat(layers, dim="band", coords="minimal", compat="override", join="override")
    reflectance = reflectance.transpose("time", "band", "y", "x").astype("float32")
    if reflectance.chunks is not None:  # one chunk per date and tile holding every band: 7x fewer Zarr
        reflectance = reflectance.chunk({"band": -1})  # chunks to read (2x faster), the readers' own layout
    inside = xr.DataArray(aoi_mask, dims=("y", "x"), coords={"y": raw.y, "x": raw.x})
    valid = reflectance.notnull().all("band") & inside
    variables: dict[str, xr.DataArray] = {"reflectance": reflectance}
    if sensor.qa is not None:
        qa, invalid = qa_validity(raw, sensor.qa)
        valid = valid & ~invalid
        variables["qa"] = qa
    n_inside = max(int(aoi_mask.sum()), 1)
    fraction = (valid.sum(("y", "x")) / n_inside).astype("float32")
    ds = xr.Dataset({**variables, "valid": valid, "valid_fraction": fraction})
    ds["aoi_mask"] = inside
    ds = ds.drop_vars([c for c in ("spatial_ref",) if c in ds.coords])
    return ds


def build_cube(items: list[pystac.Item], aoi: Aoi, sensor: SensorOptions, options: CubeOptions, *,
               signing: Literal["none", "planetary_computer"] = "none",
               window: tuple[slice, slice] | None = None) -> tuple[xr.Dataset, list[str]]:
    """Lazy cube of ``items`` over ``aoi``; returns it and the list of skipped items (with reasons).

    ``window``: (rows, cols) slices of the AOI grid to load instead of the whole grid (a tile,
    :mod:`pipeline.tiling.layout`): the same transform phase and pixel values as those pixels of the
    whole-AOI cube; the AOI mask is rasterized on the whole grid and cut, so it matches too.
    """
    items, skipped = check_items(items, sensor, on_error=options.on_error)
    scaling = resolve_scaling(items, sensor)
    geobox = aoi_geobox(aoi, options.resolution, anchor=options.anchor)
    inside = aoi_pixels(aoi, geobox)
    if window is not None:
        geobox, inside = geobox[window], inside[window]
    raw = load_raw(items, geobox, sensor, scaling, options, signing=signing)
    cube = to_cube(raw, sensor, scaling, inside)
    by_day: dict[dt.date, list[str]] = {}
    for item in items:
        by_day.setdefault(solar_day(item), []).append(item.id)
    lon = aoi.geometry.centroid.x
    labels = []
    for t in cube.time.values:
        when = np.datetime64(t, "s").astype(dt.datetime)
        day = (when + dt.timedelta(hours=lon / 15.0)).date() if options.groupby == "solar_day" else when.date()
        labels.append(",".join(by_day.get(day, [])))
    cube = cube.assign_coords(item_ids=("time", labels))
    t = geobox.transform
    cube.attrs.update(
        crs=str(geobox.crs),
        transform=[t.a, t.b, t.c, t.d, t.e, t.f],
        aoi=aoi.name,
        resolution=options.resolution,
        groupby=options.groupby,
        scaling={b: [s.scale, s.offset, nodata_json(s.nodata)] for b, s in scaling.items()},
        band_sources={b: src.name for b, src in sensor.bands.items()},
        qa_decoding=None if sensor.qa is None else {
            "asset": sensor.qa.asset, "decode": sensor.qa.decode, "invalid_bits": list(sensor.qa.invalid_bits),
            "invalid_values": list(sensor.qa.invalid_values)},
    )
    cube.attrs["items_by_day"] = {d.isoformat(): ids for d, ids in sorted(by_day.items())}
    return cube, skipped
