"""What the offline demo generates: its options (:class:`DemoSpec`), class table and grid.

The demo is a synthetic Landsat 8/9 Collection 2 Level-2 time series over one AOI on a real
UTM grid (30 m pixels, origin snapped to 30 m). Everything it draws is reproducible from
``DemoSpec.seed``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from affine import Affine

from pipeline.errors import ConfigError

PIXEL_SIZE = 30.0
"""Ground sampling distance of the demo grid, metres."""

L8_FIRST_DATE = dt.date(2013, 4, 11)
"""First date of Landsat 8 science operations; the demo series cannot start earlier."""

DEMO_CLASSES: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "cultivated", "color": "#e6c34a"},
    {"id": 2, "name": "forest", "color": "#1b7837"},
    {"id": 3, "name": "construction", "color": "#d6604d"},
    {"id": 4, "name": "water", "color": "#2166ac"},
    {"id": 5, "name": "cloud", "color": "#f0f0f0"},
    {"id": 6, "name": "shadow", "color": "#5a5a5a"},
)
"""Class table of the demo labels (id 0 = fill / unlabelled is reserved)."""

CULTIVATED, FOREST, CONSTRUCTION, WATER, CLOUD, SHADOW = 1, 2, 3, 4, 5, 6
"""Class ids of :data:`DEMO_CLASSES`."""


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def _parse_date(key: str, value: object) -> dt.date:
    if not isinstance(value, str):
        raise ConfigError(f"demo option {key!r} must be an ISO date string 'YYYY-MM-DD', got {value!r}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"demo option {key!r}={value!r} is not a date; write it as 'YYYY-MM-DD'") from exc


@dataclass(frozen=True)
class DemoSpec:
    """Options of the synthetic demo catalog (the ``demo`` config section).

    Attributes:
        seed: random seed; the same seed gives identical pixels, labels and items.
        size: AOI width = height in pixels (30 m), 32..2048.
        start, end: first and last day (ISO dates) of the acquisition schedule.
        epsg: EPSG code of the WGS 84 / UTM zone of the grid (326xx north, 327xx south).
        center: (lon, lat) in degrees of the AOI centre.
        n_dates: acquisitions kept (at random) out of the 16-day Landsat 8 schedule plus the
            8-day-offset Landsat 9 one from 2022; fewer if the schedule has fewer.
        cloud_free_share: probability that a (non-overcast) date has no cloud at all, 0..1.
        overcast_dates: number of dates that are nearly fully (92-99 %) cloudy (at most a
            quarter of the dates).
        cirrus_share: probability that a date carries thin cirrus streaks, 0..1.
        fill_share: probability that a date has a no-data wedge at the scene edge, 0..1.
        urban_growth: growth of the construction area over the period, relative to its
            initial area (0.4 = +40 %), 0..3.
        noise_std: sensor noise standard deviation, reflectance units, 0..0.05.
        wrs_path, wrs_row: WRS-2 path and row written into the item ids and properties.
    """

    seed: int = 42
    size: int = 256
    start: str = "2021-01-01"
    end: str = "2022-12-31"
    epsg: int = 32649
    center: tuple[float, float] = (112.93, 28.13)
    n_dates: int = 36
    cloud_free_share: float = 0.35
    overcast_dates: int = 2
    cirrus_share: float = 0.15
    fill_share: float = 0.2
    urban_growth: float = 0.4
    noise_std: float = 0.004
    wrs_path: int = 123
    wrs_row: int = 40

    def __post_init__(self) -> None:
        ints = {"seed": (0, 2**63 - 1), "size": (32, 2048), "epsg": (32601, 32760),
                "n_dates": (2, 1000), "overcast_dates": (0, 1000), "wrs_path": (1, 233),
                "wrs_row": (1, 248)}
        for key, (lo, hi) in ints.items():
            value = getattr(self, key)
            if not _is_int(value) or not lo <= value <= hi:
                raise ConfigError(f"demo option {key!r} must be an integer in [{lo}, {hi}], got {value!r}")
        floats = {"cloud_free_share": (0.0, 1.0), "cirrus_share": (0.0, 1.0),
                  "fill_share": (0.0, 1.0), "urban_growth": (0.0, 3.0), "noise_std": (0.0, 0.05)}
        for key, (flo, fhi) in floats.items():
            value = getattr(self, key)
            if not _is_number(value) or not flo <= float(value) <= fhi:
                raise ConfigError(f"demo option {key!r} must be a number in [{flo}, {fhi}], got {value!r}")
        if 32660 < self.epsg < 32701:
            raise ConfigError(
                f"demo option 'epsg'={self.epsg} is not a WGS 84 / UTM zone; use 32601..32660 "
                f"(north) or 32701..32760 (south), e.g. 32649 for Changsha"
            )
        start, end = _parse_date("start", self.start), _parse_date("end", self.end)
        if start < L8_FIRST_DATE:
            raise ConfigError(
                f"demo option 'start'={self.start} precedes Landsat 8 operations; use {L8_FIRST_DATE} or later"
            )
        if (end - start).days < 32:
            raise ConfigError(
                f"demo options 'start'={self.start} / 'end'={self.end} must span at least 32 days; move 'end' later"
            )
        c = self.center
        if (not isinstance(c, tuple) or len(c) != 2 or not all(_is_number(v) for v in c)):
            raise ConfigError(f"demo option 'center' must be [lon, lat] in degrees, got {c!r}")
        lon, lat = float(c[0]), float(c[1])
        if not (-180.0 <= lon <= 180.0 and -80.0 <= lat <= 84.0):
            raise ConfigError(f"demo option 'center'={list(c)} is outside the UTM domain (lon -180..180, lat -80..84)")
        zone = self.epsg % 100
        cm = -183.0 + 6.0 * zone
        if abs((lon - cm + 180.0) % 360.0 - 180.0) > 6.0:
            good = int((lon + 180.0) // 6.0) % 60 + 1
            raise ConfigError(
                f"demo option 'center' lon {lon} is far from UTM zone {zone} (EPSG:{self.epsg}); "
                f"use epsg {(32600 if lat >= 0 else 32700) + good}"
            )
        if (self.epsg < 32700) != (lat >= 0.0):
            raise ConfigError(
                f"demo option 'epsg'={self.epsg} is for the other hemisphere than lat {lat}; "
                f"use 326xx north, 327xx south"
            )

    @property
    def start_date(self) -> dt.date:
        return dt.date.fromisoformat(self.start)

    @property
    def end_date(self) -> dt.date:
        return dt.date.fromisoformat(self.end)

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> DemoSpec:
        """Build a spec from the ``demo`` config section (a JSON object); missing keys keep defaults.

        Raises:
            ConfigError: an unknown key, a wrong type or an out-of-range value.
        """
        if options is None:
            return cls()
        if not isinstance(options, Mapping):
            raise ConfigError(f"demo options must be a JSON object, got {type(options).__name__}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown demo option(s) {unknown}; allowed keys: {allowed}")
        kwargs = dict(options)
        if "center" in kwargs and isinstance(kwargs["center"], list | tuple):
            kwargs["center"] = tuple(kwargs["center"])
        for key in ("cloud_free_share", "cirrus_share", "fill_share", "urban_growth", "noise_std"):
            if key in kwargs and _is_int(kwargs[key]):
                kwargs[key] = float(kwargs[key])
        return cls(**kwargs)


@dataclass(frozen=True)
class DemoGrid:
    """The demo AOI grid.

    Attributes:
        epsg: EPSG code of the UTM CRS.
        transform: pixel-corner affine (30 m pixels, north up), origin at 15 m mod 30 m like
            Landsat scenes (pixel centres on multiples of 30 m).
        shape: (height, width) in pixels.
        bbox_lonlat: (minlon, minlat, maxlon, maxlat) enclosing the footprint, EPSG:4326.
    """

    epsg: int
    transform: Affine
    shape: tuple[int, int]
    bbox_lonlat: tuple[float, float, float, float]

    @property
    def crs(self) -> str:
        """``"EPSG:xxxxx"``."""
        return f"EPSG:{self.epsg}"

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) of the footprint in the grid CRS, metres."""
        h, w = self.shape
        t = self.transform
        return (t.c, t.f + h * t.e, t.c + w * t.a, t.f)


def demo_grid(spec: DemoSpec) -> DemoGrid:
    """The grid of ``spec``: ``size`` x ``size`` 30 m pixels centred on ``spec.center``."""
    from pyproj import Transformer
    from rasterio.warp import transform_bounds

    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{spec.epsg}", always_xy=True)
    cx, cy = to_utm.transform(float(spec.center[0]), float(spec.center[1]))
    half = spec.size * PIXEL_SIZE / 2.0
    # Landsat's grid: pixel edges at odd multiples of 15 m, so pixel centres sit on multiples
    # of 30 m (scene origins such as 466185 m); loaders anchoring centres there copy pixels.
    x0 = round((cx - half - PIXEL_SIZE / 2) / PIXEL_SIZE) * PIXEL_SIZE + PIXEL_SIZE / 2
    y0 = round((cy + half - PIXEL_SIZE / 2) / PIXEL_SIZE) * PIXEL_SIZE + PIXEL_SIZE / 2
    transform = Affine(PIXEL_SIZE, 0.0, float(x0), 0.0, -PIXEL_SIZE, float(y0))
    shape = (spec.size, spec.size)
    bounds = (float(x0), float(y0) - spec.size * PIXEL_SIZE, float(x0) + spec.size * PIXEL_SIZE, float(y0))
    bbox = transform_bounds(f"EPSG:{spec.epsg}", "EPSG:4326", *bounds, densify_pts=21)
    return DemoGrid(epsg=spec.epsg, transform=transform, shape=shape,
                    bbox_lonlat=tuple(float(v) for v in bbox))  # type: ignore[arg-type]
