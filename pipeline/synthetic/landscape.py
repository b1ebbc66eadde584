"""The demo ground: land-cover layout, field parcels with crop calendars, and urban growth.

Pure functions of a seeded generator. The layout mimics a peri-urban scene of the Xiang
river plain around Changsha: a meandering river and a lake, forested hills, a town with a
road network that expands into the surrounding fields over the period, and paddy / dryland
parcels with different crop calendars. All arrays are (y, x) on the demo grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from pipeline.synthetic.spec import CONSTRUCTION, CULTIVATED, FOREST, WATER

NEVER = np.float32(np.inf)
"""``conversion_day`` of pixels that never become construction."""

CROP_NAMES = ("double_rice", "single_rice", "rapeseed_rice", "dryland")
"""Crop calendars of the parcels (index = ``Landscape.crop``)."""
CROP_PROBS = (0.4, 0.25, 0.15, 0.2)


def smooth_noise(shape: tuple[int, ...], sigma: float | tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to mean 0, standard deviation 1 (float32)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    std = float(field.std())
    return ((field - field.mean()) / (std if std > 0 else 1.0)).astype(np.float32)


@dataclass(frozen=True)
class Landscape:
    """Static description of the demo ground.

    Attributes:
        base_class: (y, x) uint8 class id at the start of the period (1 cultivated,
            2 forest, 3 construction, 4 water); future construction is still 1 here.
        parcel: (y, x) int32 field parcel id (0..n_parcels-1) of cultivated pixels
            (including those converted later), -1 elsewhere.
        crop: (n_parcels,) int8 crop calendar index into :data:`CROP_NAMES`.
        shift_days: (n_parcels,) float32 shift of the parcel's calendar, days.
        vigour: (n_parcels,) float32 multiplier of the peak green-vegetation fraction.
        soil_brightness: (n_parcels,) float32 multiplier of the bare-soil reflectance.
        conversion_day: (y, x) float32 days after the series start when the pixel becomes
            construction (site works, then buildings); ``inf`` if never.
        evergreen: (y, x) bool, forest pixels of evergreen (vs deciduous) stands.
        canopy: (y, x) float32 canopy density of forest pixels, 0..1.
        road: (y, x) bool, road pixels (construction).
        urban_green: (y, x) float32 vegetation share of construction pixels, 0..1.
        lake: (y, x) bool, water pixels of the lake (the rest of the water is river).
        texture: (y, x) float32 static multiplicative brightness, about 1.
        elevation: (y, x) float32 terrain height, metres (hills under the forest).
    """

    base_class: np.ndarray
    parcel: np.ndarray
    crop: np.ndarray
    shift_days: np.ndarray
    vigour: np.ndarray
    soil_brightness: np.ndarray
    conversion_day: np.ndarray
    evergreen: np.ndarray
    canopy: np.ndarray
    road: np.ndarray
    urban_green: np.ndarray
    lake: np.ndarray
    texture: np.ndarray
    elevation: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.base_class.shape  # type: ignore[return-value]


def class_map_at(land: Landscape, day: float) -> np.ndarray:
    """Land-cover class ids (y, x) uint8 on ``day`` days after the series start."""
    out = land.base_class.copy()
    out[land.conversion_day <= day] = CONSTRUCTION
    return out


def _water(n: int, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x0 = n * rng.uniform(0.15, 0.32)
    amp = n * rng.uniform(0.04, 0.08)
    wavelength = n * rng.uniform(0.6, 1.1)
    phase = rng.uniform(0, 2 * math.pi)
    wander = ndimage.gaussian_filter1d(rng.standard_normal(n), n / 10.0, mode="reflect")
    wander = wander / (np.abs(wander).max() + 1e-9) * n * 0.03
    centre = x0 + amp * np.sin(2 * math.pi * np.arange(n) / wavelength + phase) + wander
    width = max(2.5, 0.035 * n) * (1.0 + 0.15 * smooth_noise((n,), n / 12.0, rng))
    river = np.abs(xx - centre[:, None]) < width[:, None] / 2.0
    cx, cy = n * rng.uniform(0.62, 0.85), n * rng.uniform(0.2, 0.8)
    rx, ry = n * rng.uniform(0.06, 0.1), n * rng.uniform(0.06, 0.1)
    d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    lake = d < 1.0 + 0.5 * smooth_noise((n, n), n / 25.0, rng)
    return river | lake, lake & ~river


def _line(yy: np.ndarray, xx: np.ndarray, px: float, py: float, angle: float, width: float) -> np.ndarray:
    return np.abs((xx - px) * math.sin(angle) - (yy - py) * math.cos(angle)) < width / 2.0


def _roads(n: int, yy: np.ndarray, xx: np.ndarray, town: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    width = max(1.2, n / 160.0)
    roads = np.zeros((n, n), dtype=bool)
    base = rng.uniform(0, math.pi)
    for k in range(3):  # highways radiating through the town
        angle = base + k * math.pi / 3 + rng.normal(0, 0.12)
        roads |= _line(yy, xx, town[0] + rng.normal(0, n * 0.02), town[1] + rng.normal(0, n * 0.02), angle, width)
    for _ in range(2):  # country roads elsewhere
        px, py = n * rng.uniform(0.1, 0.9), n * rng.uniform(0.1, 0.9)
        roads |= _line(yy, xx, px, py, rng.uniform(0, math.pi), width * 0.9)
    ring = np.hypot(xx - town[0], yy - town[1])
    radius = n * rng.uniform(0.2, 0.26)
    roads |= np.abs(ring - radius) < width / 2.0
    return roads


def _parcels(n: int, rng: np.random.Generator) -> np.ndarray:
    n_seeds = max(8, int(n * n / 80))
    seeds = rng.uniform(0, n, size=(n_seeds, 2))
    yy, xx = np.mgrid[0:n, 0:n]
    pts = np.column_stack([yy.ravel() + 0.5, xx.ravel() + 0.5])
    _, idx = cKDTree(seeds).query(pts)
    return idx.reshape(n, n).astype(np.int32)


def _growth(
    land_cls: np.ndarray, parcel: np.ndarray, potential: np.ndarray, n_construction: int,
    urban_growth: float, span_days: float, rng: np.random.Generator,
) -> np.ndarray:
    """Conversion day per pixel: whole parcels nearest the town convert, nearest first."""
    conv = np.full(land_cls.shape, NEVER, dtype=np.float32)
    target = int(round(urban_growth * n_construction))
    cultivated = land_cls == CULTIVATED
    if target <= 0 or not cultivated.any():
        return conv
    ids = parcel[cultivated]
    counts = np.bincount(ids, minlength=int(parcel.max()) + 1)
    mean_u = np.bincount(ids, weights=potential[cultivated], minlength=counts.size) / np.maximum(counts, 1)
    order = [int(p) for p in np.argsort(mean_u + 0.02 * rng.standard_normal(counts.size)) if counts[p] > 0]
    first, last = 30.0, max(31.0, span_days - 60.0)
    day_of_parcel = np.full(counts.size, NEVER, dtype=np.float32)
    done = 0
    for p in order:
        if done >= target:
            break
        day = first + (last - first) * done / target + rng.uniform(-8.0, 8.0)
        day_of_parcel[p] = min(max(day, 1.0), last)
        done += int(counts[p])
    conv[cultivated] = day_of_parcel[parcel[cultivated]]
    return conv


def make_landscape(
    size: int, *, seed: int, urban_growth: float = 0.4, span_days: float = 730.0,
) -> Landscape:
    """Draw the demo ground for a ``size`` x ``size`` grid.

    Args:
        size: grid width = height, pixels.
        seed: random seed (the same seed gives the same landscape).
        urban_growth: construction area added over the period, relative to the initial one.
        span_days: length of the series, days (conversions happen inside it).
    """
    rng = np.random.default_rng([seed, 1])
    n = size
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    water, lake = _water(n, yy, xx, rng)

    town = (n * rng.uniform(0.42, 0.6), n * rng.uniform(0.35, 0.65))
    potential = np.hypot(xx - town[0], yy - town[1]) / n + 0.06 * smooth_noise((n, n), n / 20.0, rng)
    core = (potential <= np.quantile(potential, 0.09)) & ~water
    roads = _roads(n, yy, xx, town, rng)

    hills = (smooth_noise((n, n), n / 10.0, rng) + 0.45 * smooth_noise((n, n), n / 30.0, rng)
             + 1.2 * np.hypot(xx - town[0], yy - town[1]) / n)
    free = ~water & ~core
    forest = (hills > np.quantile(hills[free], 0.78)) & free
    lo, hi = np.quantile(hills, [0.55, 0.995])
    relief = np.clip((hills - lo) / (hi - lo), 0.0, None) ** 1.3
    elevation = (40.0 + 260.0 * relief + 6.0 * smooth_noise((n, n), 2.0, rng) * (relief > 0)).astype(np.float32)
    evergreen = forest & (smooth_noise((n, n), n / 12.0, rng) > -0.4)

    cls = np.full((n, n), CULTIVATED, dtype=np.uint8)
    cls[forest] = FOREST
    cls[water] = WATER
    cls[core | roads] = CONSTRUCTION

    parcel_all = _parcels(n, rng)
    n_parcels = int(parcel_all.max()) + 1
    crop = rng.choice(len(CROP_NAMES), size=n_parcels, p=CROP_PROBS).astype(np.int8)
    shift = np.clip(rng.normal(0.0, 7.0, n_parcels), -15, 15).astype(np.float32)
    vigour = rng.uniform(0.85, 1.05, n_parcels).astype(np.float32)
    soil = rng.uniform(0.85, 1.15, n_parcels).astype(np.float32)
    conv = _growth(cls, parcel_all, potential, int((cls == CONSTRUCTION).sum()), urban_growth, span_days, rng)
    parcel = np.where(cls == CULTIVATED, parcel_all, -1).astype(np.int32)

    canopy = np.clip(0.85 + 0.08 * smooth_noise((n, n), 1.5, rng), 0.55, 1.0).astype(np.float32)
    urban_green = np.where(
        roads, 0.05, np.clip(0.15 + 0.08 * smooth_noise((n, n), 2.0, rng), 0.0, 0.4)
    ).astype(np.float32)
    urban_green[np.isfinite(conv)] = 0.05
    texture = (1.0 + 0.03 * smooth_noise((n, n), 1.0, rng) + 0.015 * rng.standard_normal((n, n))).astype(np.float32)
    return Landscape(
        base_class=cls, parcel=parcel, crop=crop, shift_days=shift, vigour=vigour,
        soil_brightness=soil, conversion_day=conv, evergreen=evergreen, canopy=canopy,
        road=roads, urban_green=urban_green, lake=lake & water & ~roads, texture=texture,
        elevation=elevation,
    )
