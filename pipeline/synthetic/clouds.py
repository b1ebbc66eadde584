"""Clouds, cloud shadows, cirrus and scene-edge fill of one demo date.

Clouds are thresholded smoothed noise (two octaves) drawn on a canvas larger than the AOI,
so that clouds just outside the AOI still cast shadows into it. Shadows are the cloud mask
displaced along the anti-sun direction by ``cloud height * tan(solar zenith)``; they darken
the ground, clouds brighten it, cirrus adds a thin veil. The dilated-cloud ring is the
3-pixel dilation of the cloud mask, as in CFMask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipeline.synthetic.landscape import smooth_noise
from pipeline.synthetic.schedule import Acquisition
from pipeline.synthetic.spec import PIXEL_SIZE

CLOUD_SPECTRUM = np.array([0.50, 0.50, 0.50, 0.52, 0.55, 0.42, 0.30], np.float32)
"""Reflectance of a thick cumulus per band (coastal .. swir22)."""
CIRRUS_SPECTRUM = np.array([0.05, 0.045, 0.04, 0.037, 0.034, 0.028, 0.017], np.float32)
"""Added reflectance of an optically thick cirrus veil per band."""
SHADOW_DARKENING = np.array([0.45, 0.5, 0.55, 0.6, 0.7, 0.72, 0.72], np.float32)
"""Share of the direct light a thick cloud's shadow removes per band (diffuse sky light stays)."""
DILATION_PX = 3
MEDIUM_BAND = 0.25
"""Cloud-field margin below the cloud threshold flagged medium cloud confidence (thin haze)."""


@dataclass(frozen=True)
class Atmosphere:
    """The sky of one date on the AOI grid; every array is (y, x).

    Attributes:
        cloud: bool, high-confidence cloud.
        cloud_confidence: uint8, 1 low / 2 medium (haze at cloud edges) / 3 high (cloud).
        cloud_opacity: float32 0..1, cloud (and edge haze) opacity over the ground.
        dilated: bool, dilated-cloud ring (never on ``cloud``).
        shadow: bool, cloud shadow (never on ``cloud``).
        shadow_strength: float32 0..1, opacity of the cloud casting the shadow.
        cirrus: bool, high-confidence cirrus.
        cirrus_thickness: float32 0..1, cirrus optical thickness (also thin, unflagged veils).
        fill: bool, outside the scene (no data).
        shadow_shift: (rows, cols) displacement of shadows from their clouds, pixels.
    """

    cloud: np.ndarray
    cloud_confidence: np.ndarray
    cloud_opacity: np.ndarray
    dilated: np.ndarray
    shadow: np.ndarray
    shadow_strength: np.ndarray
    cirrus: np.ndarray
    cirrus_thickness: np.ndarray
    fill: np.ndarray
    shadow_shift: tuple[int, int]


def shadow_shift(sun_azimuth: float, sun_elevation: float, cloud_height_m: float, *,
                 pixel_size: float = PIXEL_SIZE) -> tuple[int, int]:
    """(rows, cols) displacement of a cloud's shadow on a north-up grid.

    The shadow lies ``cloud_height_m * tan(zenith)`` metres from the cloud towards azimuth
    ``sun_azimuth + 180`` (degrees clockwise from north); rows grow southwards.
    """
    zenith = math.radians(90.0 - sun_elevation)
    dist = cloud_height_m * math.tan(zenith) / pixel_size
    az = math.radians(sun_azimuth)
    east, north = -math.sin(az) * dist, -math.cos(az) * dist
    return int(round(-north)), int(round(east))


def _fill_mask(shape: tuple[int, int], edge: str, fraction: float, rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    if edge == "none" or fraction <= 0:
        return np.zeros(shape, bool)
    tilt = math.radians(rng.uniform(10.0, 14.0))  # scene edges run about 12 deg off north
    rows, cols = np.mgrid[0:h, 0:w]
    along = cols * math.cos(tilt) + rows * math.sin(tilt)
    if edge == "east":
        return along > np.quantile(along, 1.0 - fraction)
    return along < np.quantile(along, fraction)


def make_atmosphere(shape: tuple[int, int], acq: Acquisition, rng: np.random.Generator) -> Atmosphere:
    """Draw clouds, shadows, cirrus and fill of ``acq`` on a grid of ``shape`` (rows, cols).

    The cloud threshold is the quantile of the cloud field over the AOI giving exactly
    ``acq.sky.cloud_target`` cloud cover (before fill is cut out).
    """
    h, w = shape
    sky = acq.sky
    drow, dcol = shadow_shift(acq.sun_azimuth, acq.sun_elevation, sky.cloud_height_m)
    pad = max(abs(drow), abs(dcol)) + DILATION_PX + 2
    canvas = (h + 2 * pad, w + 2 * pad)
    scale = rng.uniform(5.0, 12.0)
    field = 0.7 * smooth_noise(canvas, scale, rng) + 0.3 * smooth_noise(canvas, scale / 3.0, rng)
    inner = (slice(pad, pad + h), slice(pad, pad + w))
    if sky.cloud_target > 0:
        thr = float(np.quantile(field[inner], 1.0 - sky.cloud_target))
    else:
        thr = float(field.max()) + 1.0
    cloud_c = field > thr
    opacity_c = np.where(
        cloud_c, 0.6 + 0.4 * np.clip((field - thr) / 0.8, 0.0, 1.0),
        0.2 * np.clip((field - thr + MEDIUM_BAND) / MEDIUM_BAND, 0.0, 1.0),
    ).astype(np.float32)
    dilated_c = ndimage.binary_dilation(cloud_c, iterations=DILATION_PX) & ~cloud_c
    src = (slice(pad - drow, pad - drow + h), slice(pad - dcol, pad - dcol + w))
    cloud = cloud_c[inner]
    shadow = cloud_c[src] & ~cloud
    strength = np.where(shadow, opacity_c[src], 0.0).astype(np.float32)
    conf = np.where(cloud, 3, np.where(field[inner] > thr - MEDIUM_BAND, 2, 1)).astype(np.uint8)

    if sky.cirrus:
        sig = (rng.uniform(2.0, 4.0), rng.uniform(15.0, 30.0))
        if rng.random() < 0.5:
            sig = sig[::-1]
        cf = smooth_noise(shape, sig, rng)
        share = rng.uniform(0.1, 0.35)
        cthr = float(np.quantile(cf, 1.0 - share))
        cirrus = cf > cthr
        thickness = (np.clip((cf - cthr + 0.6) / 1.5, 0.0, 1.0) * rng.uniform(0.5, 1.0)).astype(np.float32)
    else:
        cirrus = np.zeros(shape, bool)
        thickness = np.zeros(shape, np.float32)
    return Atmosphere(
        cloud=cloud, cloud_confidence=conf, cloud_opacity=opacity_c[inner],
        dilated=dilated_c[inner] & ~cloud, shadow=shadow, shadow_strength=strength,
        cirrus=cirrus, cirrus_thickness=thickness,
        fill=_fill_mask(shape, sky.fill_edge, sky.fill_fraction, rng), shadow_shift=(drow, dcol),
    )


def apply_atmosphere(surface: np.ndarray, atm: Atmosphere, *, brightness: float = 1.0) -> np.ndarray:
    """Top-of-canopy reflectance as the sensor sees it through ``atm``.

    Args:
        surface: (band, y, x) float32 surface reflectance (coastal .. swir22).
        atm: the sky of the date.
        brightness: multiplier of the cloud spectrum (cloud type / illumination).

    Returns:
        (band, y, x) float32: shadows darkened, cirrus veiled, clouds blended in.
    """
    out = surface + CIRRUS_SPECTRUM[:, None, None] * atm.cirrus_thickness[None]
    out = out * (1.0 - SHADOW_DARKENING[:, None, None] * atm.shadow_strength[None])
    op = atm.cloud_opacity[None]
    cloud = CLOUD_SPECTRUM[:, None, None] * np.float32(brightness) * (0.75 + 0.35 * op)
    return ((1.0 - op) * out + op * cloud).astype(np.float32)


def cloud_cover_percent(cloud: np.ndarray, fill: np.ndarray, where: np.ndarray | None = None) -> float:
    """Percent of non-fill pixels (optionally only those in ``where``) that are cloud, 2 decimals."""
    valid = ~fill if where is None else (~fill & where)
    n = int(valid.sum())
    return round(100.0 * float((cloud & valid).sum()) / n, 2) if n else 0.0
