"""Surface reflectance of the demo ground on a given date: endmembers, phenology, mixing.

Each pixel is a linear mixture of endmember spectra (typical Landsat 8 OLI surface
reflectance of green crops, forest canopy, litter, red soil, paddy water, river and lake
water, roofs/concrete, asphalt and construction sites) whose fractions follow the crop
calendars, forest phenology and urban growth of the :class:`~pipeline.synthetic.landscape.Landscape`.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
from scipy.special import expit

from pipeline.synthetic.landscape import CROP_NAMES, Landscape
from pipeline.synthetic.spec import CONSTRUCTION, CULTIVATED, FOREST, PIXEL_SIZE, WATER

BANDS = ("coastal", "blue", "green", "red", "nir08", "swir16", "swir22")
"""Surface reflectance bands, in this order on every band axis of the demo."""

ENDMEMBERS: dict[str, tuple[float, ...]] = {
    #                  coastal blue   green  red    nir08  swir16 swir22
    "crop":           (0.030, 0.035, 0.075, 0.040, 0.420, 0.210, 0.095),
    "dry_vegetation": (0.045, 0.055, 0.085, 0.110, 0.230, 0.300, 0.200),
    "forest":         (0.020, 0.024, 0.050, 0.026, 0.300, 0.140, 0.060),
    "litter":         (0.040, 0.048, 0.070, 0.095, 0.190, 0.260, 0.180),
    "soil":           (0.060, 0.075, 0.110, 0.160, 0.220, 0.310, 0.260),
    "paddy_water":    (0.055, 0.060, 0.075, 0.070, 0.060, 0.030, 0.015),
    "river":          (0.060, 0.065, 0.085, 0.070, 0.030, 0.010, 0.005),
    "lake":           (0.045, 0.048, 0.055, 0.030, 0.015, 0.006, 0.003),
    "builtup":        (0.100, 0.115, 0.135, 0.155, 0.210, 0.270, 0.240),
    "road":           (0.080, 0.090, 0.100, 0.110, 0.150, 0.200, 0.180),
    "site":           (0.100, 0.125, 0.170, 0.215, 0.270, 0.350, 0.300),
}
"""Endmember surface reflectance per band of :data:`BANDS` (unitless)."""
_NAMES = tuple(ENDMEMBERS)
_MATRIX = np.array([ENDMEMBERS[k] for k in _NAMES], dtype=np.float32).T  # (band, endmember)

# Crop calendars: (sow/transplant day of year, harvest day of year, peak green fraction, flooded).
CALENDARS: dict[str, tuple[tuple[float, float, float, bool], ...]] = {
    "double_rice": ((105.0, 200.0, 0.90, True), (208.0, 300.0, 0.88, True)),
    "single_rice": ((145.0, 265.0, 0.92, True),),
    "rapeseed_rice": ((285.0, 495.0, 0.75, False), (160.0, 280.0, 0.90, True)),
    "dryland": ((70.0, 150.0, 0.70, False), (175.0, 250.0, 0.75, False), (265.0, 330.0, 0.60, False)),
}
FALLOW_GREEN = 0.1
"""Green fraction of weeds on fallow fields."""
SITE_DAYS = 120.0
"""Days a converted pixel stays a bare construction site before buildings cover it."""
BAND_NOISE = np.array([1.1, 1.0, 0.8, 0.8, 1.0, 0.8, 0.7], dtype=np.float32)
"""Relative sensor noise per band (times ``noise_std``)."""


def _logistic(x: np.ndarray) -> np.ndarray:
    return expit(x)


def illumination(elevation: np.ndarray, *, sun_azimuth: float, sun_elevation: float,
                 pixel_size: float = PIXEL_SIZE) -> np.ndarray:
    """Terrain illumination factor (y, x) float32: cos(incidence) / cos(zenith), 0.3..1.6.

    Args:
        elevation: (y, x) terrain height, metres, on a north-up grid.
        sun_azimuth, sun_elevation: degrees (azimuth clockwise from north).
    """
    dz_drow, dz_dcol = np.gradient(elevation.astype(np.float64), pixel_size)
    slope = np.arctan(np.hypot(dz_drow, dz_dcol))
    aspect = np.arctan2(-dz_dcol, dz_drow)  # downslope direction, clockwise from north
    zen = math.radians(90.0 - sun_elevation)
    cos_i = math.cos(zen) * np.cos(slope) + math.sin(zen) * np.sin(slope) * np.cos(math.radians(sun_azimuth) - aspect)
    return np.clip(cos_i / math.cos(zen), 0.3, 1.6).astype(np.float32)


def crop_fractions(crop: np.ndarray, shift_days: np.ndarray, vigour: np.ndarray, doy: float) -> tuple[np.ndarray, ...]:
    """Green, dry and flooded fractions of each parcel on day of year ``doy``.

    Args:
        crop, shift_days, vigour: per-parcel arrays (n_parcels,) of the landscape.
        doy: day of year (1..366), fractional allowed.

    Returns:
        ``(green, dry, flood)``, each (n_parcels,) float32 in 0..1: green and senescent
        vegetation cover, and the flooded share of the ground left uncovered.
    """
    n = crop.size
    green = np.zeros(n, np.float32)
    dry = np.zeros(n, np.float32)
    flood = np.zeros(n, np.float32)
    for ci, name in enumerate(CROP_NAMES):
        sel = crop == ci
        if not sel.any():
            continue
        for sow, harvest, fmax, flooded in CALENDARS[name]:
            for year in (-365.0, 0.0, 365.0):
                t = doy - year - shift_days[sel]
                rise = _logistic((t - (sow + 25.0)) / 8.0)
                cover = fmax * vigour[sel] * rise * _logistic((harvest - t) / 3.0)
                ripe = _logistic((t - (harvest - 18.0)) / 5.0)
                green[sel] = np.maximum(green[sel], cover * (1.0 - 0.65 * ripe))
                dry[sel] = np.maximum(dry[sel], cover * 0.65 * ripe)
                if flooded:
                    window = _logistic((t - (sow - 15.0)) / 3.0) * _logistic((sow + 45.0 - t) / 3.0)
                    flood[sel] = np.maximum(flood[sel], 0.75 * window * (1.0 - rise))
    return green, dry, flood


def forest_green(land: Landscape, doy: float) -> np.ndarray:
    """Green canopy fraction (y, x) float32 of forest pixels on day of year ``doy``."""
    evergreen = 0.88 + 0.06 * math.cos(2 * math.pi * (doy - 200.0) / 365.0)
    leaf = float(_logistic(np.array((doy - 100.0) / 8.0)) * _logistic(np.array((320.0 - doy) / 10.0)))
    deciduous = 0.3 + 0.62 * leaf
    return (land.canopy * np.where(land.evergreen, evergreen, deciduous)).astype(np.float32)


def abundances(land: Landscape, day: float, doy: float) -> np.ndarray:
    """Endmember fractions (endmember, y, x) float32 in the order of :data:`ENDMEMBERS`.

    Args:
        land: the demo ground.
        day: days after the series start (urban growth).
        doy: day of year (phenology).
    """
    h, w = land.shape
    a = np.zeros((len(_NAMES), h, w), np.float32)
    ix = {k: i for i, k in enumerate(_NAMES)}
    cls = land.base_class
    converted = land.conversion_day <= day

    crop = (cls == CULTIVATED) & ~converted
    green_p, dry_p, flood_p = crop_fractions(land.crop, land.shift_days, land.vigour, doy)
    pid = land.parcel[crop]
    green = green_p[pid] + (1.0 - green_p[pid] - dry_p[pid]) * FALLOW_GREEN
    bare = 1.0 - green - dry_p[pid]
    a[ix["crop"]][crop] = green
    a[ix["dry_vegetation"]][crop] = dry_p[pid]
    a[ix["paddy_water"]][crop] = bare * flood_p[pid]
    a[ix["soil"]][crop] = bare * (1.0 - flood_p[pid]) * land.soil_brightness[pid]

    forest = cls == FOREST
    fg = forest_green(land, doy)[forest]
    a[ix["forest"]][forest] = fg
    a[ix["litter"]][forest] = (1.0 - fg) * 0.8

    water = cls == WATER
    turbidity = 1.0 + 0.3 * math.exp(-(((doy - 150.0) / 45.0) ** 2))
    a[ix["river"]][water & ~land.lake] = turbidity
    a[ix["lake"]][water & land.lake] = 1.0

    summer = 0.7 + 0.3 * math.exp(-(((doy - 200.0) / 70.0) ** 2))
    built = (cls == CONSTRUCTION) | converted
    ug = land.urban_green[built] * summer
    site = converted & (day - land.conversion_day < SITE_DAYS)
    a[ix["crop"]][built] = ug
    a[ix["road"]][built & land.road] = 1.0 - land.urban_green[built & land.road] * summer
    a[ix["builtup"]][built & ~land.road & ~site] = 1.0 - ug[(~land.road & ~site)[built]]
    a[ix["site"]][site & ~land.road] = 1.0 - ug[(site & ~land.road)[built]]
    return a


def surface_reflectance(
    land: Landscape, when: dt.date, *, start: dt.date, sun_azimuth: float, sun_elevation: float,
    rng: np.random.Generator, noise_std: float = 0.004,
) -> np.ndarray:
    """Surface reflectance of the ground on ``when``, before clouds.

    Args:
        land: the demo ground.
        when: acquisition date.
        start: first day of the series (``land.conversion_day`` counts from it).
        sun_azimuth, sun_elevation: sun position, degrees (terrain shading of the hills).
        rng: generator of this date (soil moisture, residual haze, sensor noise).
        noise_std: sensor noise standard deviation, reflectance units.

    Returns:
        (band, y, x) float32 unitless reflectance in the band order of :data:`BANDS`.
    """
    day = float((when - start).days)
    doy = float(when.timetuple().tm_yday)
    a = abundances(land, day, doy)
    a[_NAMES.index("soil")] *= rng.uniform(0.88, 1.05)  # soil moisture of the day
    h, w = land.shape
    refl = (_MATRIX @ a.reshape(len(_NAMES), -1)).reshape(len(BANDS), h, w)
    gain = rng.uniform(0.98, 1.02, len(BANDS)).astype(np.float32)
    haze = np.array([1.0, 0.7, 0.4, 0.2, 0.0, 0.0, 0.0], np.float32) * np.float32(rng.normal(0.0, 0.004))
    light = land.texture * illumination(land.elevation, sun_azimuth=sun_azimuth, sun_elevation=sun_elevation)
    refl = refl * light[None] * gain[:, None, None] + haze[:, None, None]
    noise = rng.standard_normal((len(BANDS), h, w), dtype=np.float32) * (noise_std * BAND_NOISE)[:, None, None]
    return (refl + noise).astype(np.float32)
