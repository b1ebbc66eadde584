"""When the demo satellites fly over: acquisition dates, sun geometry and the sky of each date.

Landsat 8 images a WRS-2 path every 16 days; Landsat 9 flies the same orbit 8 days apart
(used here from 2022). The demo keeps ``spec.n_dates`` of those dates at random, so gaps
are irregular, and draws for each date what the sky looks like (:class:`SkyPlan`).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipeline.synthetic.spec import DemoSpec

L8_REFERENCE = dt.date(2021, 1, 5)
"""A Landsat 8 acquisition date of WRS-2 path 123 (adjacent paths are 7 days apart)."""
L8_REFERENCE_PATH = 123
L9_FIRST_DATE = dt.date(2022, 1, 1)
"""First Landsat 9 date the demo uses (8 days out of phase with Landsat 8)."""
REVISIT_DAYS = 16
OVERPASS_UTC = dt.time(2, 58, 30)
"""Typical scene-centre time (UTC) of a path-123 row-40 overpass (about 10:30 local solar time)."""

FillEdge = Literal["none", "east", "west"]


@dataclass(frozen=True)
class SkyPlan:
    """What the atmosphere does on one date (drawn once per date, rendered in ``clouds``).

    Attributes:
        cloud_target: share (0..1) of the AOI covered by (high-confidence) cloud.
        cloud_height_m: cloud height above ground, metres (shifts the shadows).
        cirrus: whether thin cirrus streaks are present.
        fill_edge: side of the AOI cut by the scene edge ("none" if the AOI is inside).
        fill_fraction: share of the AOI beyond the scene edge (no data), 0 if none.
    """

    cloud_target: float
    cloud_height_m: float
    cirrus: bool
    fill_edge: FillEdge
    fill_fraction: float


@dataclass(frozen=True)
class Acquisition:
    """One demo scene.

    Attributes:
        index: position in the series (0-based).
        datetime: scene-centre time, timezone-aware UTC.
        platform: "landsat-8" or "landsat-9".
        sun_azimuth: degrees clockwise from north.
        sun_elevation: degrees above the horizon.
        sky: the clouds, cirrus and fill of this date.
    """

    index: int
    datetime: dt.datetime
    platform: Literal["landsat-8", "landsat-9"]
    sun_azimuth: float
    sun_elevation: float
    sky: SkyPlan

    @property
    def date(self) -> dt.date:
        return self.datetime.date()


def solar_position(when: dt.datetime, lon: float, lat: float) -> tuple[float, float]:
    """Sun (azimuth, elevation) in degrees at ``when`` (aware, UTC) seen from ``lon``, ``lat``.

    Low-precision astronomical almanac formulas (accurate to about 0.1 degree), azimuth
    clockwise from north.
    """
    when = when.astimezone(dt.UTC)
    j2000 = dt.datetime(2000, 1, 1, 12, tzinfo=dt.UTC)
    n = (when - j2000).total_seconds() / 86400.0
    mean_lon = (280.460 + 0.9856474 * n) % 360.0
    g = math.radians((357.528 + 0.9856003 * n) % 360.0)
    ecl_lon = math.radians(mean_lon + 1.915 * math.sin(g) + 0.020 * math.sin(2 * g))
    eps = math.radians(23.439 - 0.0000004 * n)
    ra = math.atan2(math.cos(eps) * math.sin(ecl_lon), math.cos(ecl_lon))
    dec = math.asin(math.sin(eps) * math.sin(ecl_lon))
    gmst_h = (18.697374558 + 24.06570982441908 * n) % 24.0
    ha = math.radians(gmst_h * 15.0 + lon) - ra
    phi = math.radians(lat)
    elev = math.asin(math.sin(phi) * math.sin(dec) + math.cos(phi) * math.cos(dec) * math.cos(ha))
    az = math.atan2(-math.sin(ha), math.tan(dec) * math.cos(phi) - math.sin(phi) * math.cos(ha))
    return math.degrees(az) % 360.0, math.degrees(elev)


def candidate_dates(spec: DemoSpec) -> list[tuple[dt.date, Literal["landsat-8", "landsat-9"]]]:
    """Every Landsat 8 (and, from 2022, Landsat 9) date of ``spec.wrs_path`` in [start, end]."""
    start, end = spec.start_date, spec.end_date
    phase = L8_REFERENCE + dt.timedelta(days=(7 * (spec.wrs_path - L8_REFERENCE_PATH)) % REVISIT_DAYS)
    first = phase + dt.timedelta(days=REVISIT_DAYS * math.ceil((start - phase).days / REVISIT_DAYS))
    out: list[tuple[dt.date, Literal["landsat-8", "landsat-9"]]] = []
    day = first
    while day <= end:
        out.append((day, "landsat-8"))
        l9 = day + dt.timedelta(days=8)
        if L9_FIRST_DATE <= l9 <= end:
            out.append((l9, "landsat-9"))
        day += dt.timedelta(days=REVISIT_DAYS)
    l9_before = first - dt.timedelta(days=8)
    if L9_FIRST_DATE <= l9_before and start <= l9_before:
        out.append((l9_before, "landsat-9"))
    return sorted(out)


def _sky_plans(n: int, spec: DemoSpec, rng: np.random.Generator) -> list[SkyPlan]:
    n_overcast = min(spec.overcast_dates, n // 4)  # short series keep most dates usable
    overcast = set(rng.choice(n, size=n_overcast, replace=False).tolist())
    plans = []
    for i in range(n):
        if i in overcast:
            cover = float(rng.uniform(0.92, 0.99))
        elif rng.random() < spec.cloud_free_share:
            cover = 0.0
        else:
            cover = float(0.02 + 0.6 * rng.beta(1.2, 3.5))
        height = float(rng.uniform(600.0, 1800.0))
        cirrus = bool(rng.random() < spec.cirrus_share)
        if rng.random() < spec.fill_share:
            edge: FillEdge = "east" if rng.random() < 0.5 else "west"
            frac = float(rng.uniform(0.05, 0.4))
        else:
            edge, frac = "none", 0.0
        plans.append(SkyPlan(cover, height, cirrus, edge, frac))
    return plans


def acquisition_schedule(spec: DemoSpec) -> list[Acquisition]:
    """The demo's acquisitions in time order (``min(spec.n_dates, candidates)`` of them)."""
    rng = np.random.default_rng([spec.seed, 2])
    cands = candidate_dates(spec)
    # Weight each date by 1 / (dates in its 16-day window) so that the years flown by both
    # satellites are not twice as dense as the Landsat-8-only ones.
    days = np.array([(d - spec.start_date).days for d, _ in cands])
    density = np.array([np.count_nonzero((days >= x - 8) & (days < x + 8)) for x in days])
    weights = 1.0 / density
    keep = np.sort(rng.choice(len(cands), size=min(spec.n_dates, len(cands)), replace=False,
                              p=weights / weights.sum()))
    chosen = [cands[int(k)] for k in keep]
    skies = _sky_plans(len(chosen), spec, rng)
    lon, lat = float(spec.center[0]), float(spec.center[1])
    out = []
    for i, ((day, platform), sky) in enumerate(zip(chosen, skies, strict=True)):
        jitter = dt.timedelta(seconds=float(rng.uniform(-20.0, 20.0)))
        when = dt.datetime.combine(day, OVERPASS_UTC, tzinfo=dt.UTC) + jitter
        az, el = solar_position(when, lon, lat)
        out.append(Acquisition(i, when, platform, round(az, 8), round(el, 8), sky))
    return out
