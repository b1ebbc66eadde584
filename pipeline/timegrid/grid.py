"""A regular time grid over the AOI's dates: step edges, centres, and which step an acquisition is in.

``cube.period`` is a pandas offset alias: ``"16D"`` (Landsat 8 or 9 alone), ``"8D"`` (Landsat
8 + 9), ``"10D"``, ``"5D"`` (Sentinel-2 A + B), ``"1MS"`` (calendar months), ``"SMS"`` (half
months: the 1st and the 15th). Steps of a whole number of days start at the AOI's start date;
calendar periods (``MS``, ``SMS``, ``W``) start at the period boundary on or before it. Steps
follow one another without gaps until the one holding the AOI's end date (inclusive), so the
last step may end after it. A step covers ``[start, end)``; its centre is halfway.

``None`` (YAML ``null``) means no grid: one step per acquisition, the paper's protocol.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from pandas.tseries.offsets import BaseOffset, Tick

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

Composite = Literal["median", "mean", "max_ndvi", "best"]
Fill = Literal["linear", "none"]

PERIOD_EXAMPLES = ('"16D" (Landsat 8 or 9), "8D" (Landsat 8 + 9), "10D", "5D" (Sentinel-2), '
                   '"1MS" (calendar months), "SMS" (half months)')
MAX_STEPS = 100_000
DAY_NS = 86_400 * 10**9


def parse_period(period: str) -> BaseOffset:
    """The pandas offset of ``period`` (a ``cube.period`` alias); ConfigError naming ``cube.period``
    for anything that is not a positive period of whole days or longer."""
    fix = f"give a pandas offset alias such as {PERIOD_EXAMPLES}, or null for one step per acquisition"
    if not isinstance(period, str) or not period.strip():
        raise ConfigError(f"cube.period {period!r} is not a period; {fix}")
    try:
        offset = pd.tseries.frequencies.to_offset(period.strip())
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cube.period {period!r} is not a pandas offset alias ({exc}); {fix}") from exc
    if offset is None or offset.n <= 0:
        raise ConfigError(f"cube.period {period!r} is not a positive period; {fix}")
    if isinstance(offset, Tick) and (offset.nanos < DAY_NS or offset.nanos % DAY_NS):
        raise ConfigError(f"cube.period {period!r} is not a whole number of days (the cube has one value per "
                          f"acquisition day); {fix}")
    return offset


def check_grid_options(period: str | None, composite: str, fill: str) -> None:
    """Raise ConfigError for a bad ``cube.period``, ``cube.composite`` or ``cube.fill``."""
    if period is not None:
        parse_period(period)
    if composite not in get_args(Composite):
        raise ConfigError(f"cube.composite {composite!r} not allowed (allowed values: "
                          f"{', '.join(get_args(Composite))})")
    if fill not in get_args(Fill):
        raise ConfigError(f"cube.fill {fill!r} not allowed (allowed values: {', '.join(get_args(Fill))})")


@dataclass(frozen=True)
class TimeGrid:
    """Steps of a regular grid: ``starts`` and ``ends`` (steps,) datetime64[ns], ``ends``
    exclusive and equal to the next step's start; ``first_day``/``last_day`` the AOI's dates."""

    period: str
    starts: np.ndarray
    ends: np.ndarray
    first_day: dt.date
    last_day: dt.date

    @property
    def steps(self) -> int:
        """Number of steps."""
        return int(self.starts.size)

    @property
    def centres(self) -> np.ndarray:
        """(steps,) datetime64[ns], halfway between start and end."""
        return self.starts + (self.ends - self.starts) // 2

    def step_days(self) -> float:
        """Mean step length in days."""
        return float(np.mean((self.ends - self.starts) / np.timedelta64(1, "D")))

    def step_index(self, times: np.ndarray) -> np.ndarray:
        """(n,) int64 step of each of ``times`` (datetime64, any unit), -1 outside the grid."""
        t = np.asarray(times).astype("datetime64[ns]")
        index = np.searchsorted(self.starts, t, side="right") - 1
        outside = (t < self.starts[0]) | (t >= self.ends[-1])
        return np.where(outside, -1, index).astype(np.int64)

    def record(self) -> dict[str, Any]:
        """JSON-ready description: period, AOI start/end, steps, step ends (ISO days, exclusive)."""
        return {"period": self.period, "start": self.first_day.isoformat(), "end": self.last_day.isoformat(),
                "steps": self.steps, "step_ends": [str(e)[:10] for e in self.ends.astype("datetime64[D]")]}


def time_grid(first_day: dt.date, last_day: dt.date, period: str) -> TimeGrid:
    """The grid of ``period`` covering ``first_day`` .. ``last_day`` (inclusive; module docstring)."""
    offset = parse_period(period)
    if last_day < first_day:
        raise ConfigError(f"the AOI's end {last_day} is before its start {first_day}; fix aois.<name>.end")
    edge = offset.rollback(pd.Timestamp(first_day)).normalize()
    stop = pd.Timestamp(last_day) + pd.Timedelta(days=1)
    edges = [edge]
    while edges[-1] < stop:
        edges.append(edges[-1] + offset)
        if len(edges) > MAX_STEPS:
            raise ConfigError(f"cube.period {period!r} cuts {first_day} .. {last_day} into more than {MAX_STEPS} "
                              f"steps; give a longer period such as {PERIOD_EXAMPLES}")
    stamps = np.array([e.to_datetime64() for e in edges]).astype("datetime64[ns]")
    return TimeGrid(period=period, starts=stamps[:-1], ends=stamps[1:], first_day=first_day, last_day=last_day)


def revisit_days(times: np.ndarray) -> float | None:
    """Median interval in days between successive acquisition days of ``times`` (datetime64),
    None with fewer than two days."""
    days = np.unique(np.asarray(times).astype("datetime64[D]"))
    if days.size < 2:
        return None
    return float(np.median(np.diff(days).astype(np.int64)))


def grid_warning(grid: TimeGrid, times: np.ndarray, empty_steps: int) -> str | None:
    """A warning when ``cube.period`` is shorter than the revisit of the acquisitions ``times``
    (many steps then hold no acquisition): it says the share of empty steps and what to set."""
    revisit = revisit_days(times)
    if revisit is None or grid.step_days() >= revisit:
        return None
    share = empty_steps / max(grid.steps, 1)
    return (f"cube.period {grid.period!r} ({grid.step_days():g} days) is shorter than the revisit of the series "
            f"(median {revisit:g} days between acquisitions): {empty_steps} of {grid.steps} steps "
            f"({share:.0%}) hold no acquisition and are missing; set cube.period to {int(np.ceil(revisit))}D "
            f"or longer")
