"""The period a map shows, and which step of the series it is made at.

``predict.target: period`` (default): the map is the land cover of a period
(``predict.period: {start, end}``; default the last full calendar year of the AOI's dates, else
its last twelve calendar months),
classified from the window of ``time_steps`` grid steps ending at the last step that starts
inside the period. Static labels label every step of that period. ``predict.target:
last_date``: the paper's protocol, the map of the last date of the series.

Pure functions of the series' step times (datetime64) and the options; the predict, labels and
evaluate stages all use them, so they agree on the map step.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pipeline.config import parse_options
from pipeline.errors import ConfigError
from pipeline.timegrid.grid import time_grid

log = logging.getLogger(__name__)

Target = Literal["period", "last_date"]


@dataclass(frozen=True)
class TargetOptions:
    """``target``: ``period`` or ``last_date``; ``period``: ``{"start", "end"}`` ISO dates or None
    (the last full calendar year of the series)."""

    target: Target = "period"
    period: Mapping[str, str] | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> TargetOptions:
        """Validate the ``predict`` keys ``target`` and ``period`` (other keys are ignored)."""
        target = raw.get("target", "period")
        if target not in ("period", "last_date"):
            raise ConfigError(f"predict.target {target!r} not allowed (allowed values: period, last_date)")
        period = raw.get("period")
        if period is not None:
            if not isinstance(period, Mapping) or set(period) != {"start", "end"}:
                raise ConfigError(f"predict.period must be {{start: YYYY-MM-DD, end: YYYY-MM-DD}} or null, got {period!r}")
            start, end = (_day(period[k], f"predict.period.{k}") for k in ("start", "end"))
            if end < start:
                raise ConfigError(f"predict.period ends ({end}) before it starts ({start}); swap the dates")
            period = {"start": str(start), "end": str(end)}
        return cls(target=target, period=period)

    @classmethod
    def from_json(cls, text: str) -> TargetOptions:
        """Parse a stage's ``--target`` JSON text."""
        return cls.from_mapping(parse_options(text, what="what the map shows (--target)"))


def _day(value: Any, key: str) -> np.datetime64:
    try:
        return np.datetime64(dt.date.fromisoformat(str(value)), "D")
    except ValueError as exc:
        raise ConfigError(f"{key} {value!r} is not a date; write YYYY-MM-DD") from exc


def series_range(times: np.ndarray, attrs: Mapping[str, Any] | None = None) -> tuple[np.datetime64, np.datetime64]:
    """First and last day the series covers: the time grid's start/end when the store is on a
    regular grid (attrs ``time_grid``), else the first and last step."""
    grid = (attrs or {}).get("time_grid") or {}
    if grid.get("start") and grid.get("end"):
        return _day(str(grid["start"])[:10], "time_grid.start"), _day(str(grid["end"])[:10], "time_grid.end")
    days = np.asarray(times).astype("datetime64[D]")
    return days.min(), days.max()


def resolve_period(options: TargetOptions, first: np.datetime64, last: np.datetime64) -> tuple[np.datetime64, np.datetime64]:
    """The map period (start, end days): ``options.period``, else the last full calendar year in
    ``first..last``, else the last twelve calendar months up to ``last``, else the whole range
    (with a warning). Raises ConfigError naming both
    ranges when the period lies outside the series."""
    if options.period is not None:
        start, end = np.datetime64(options.period["start"], "D"), np.datetime64(options.period["end"], "D")
        if end < first or start > last:
            raise ConfigError(f"predict.period {start} .. {end} lies outside the AOI's dates {first} .. {last}; "
                              f"set predict.period inside them or widen the AOI's start/end")
        return start, end
    year = int(str(last)[:4])
    if np.datetime64(f"{year}-12-31", "D") > last:
        year -= 1
    start, end = np.datetime64(f"{year}-01-01", "D"), np.datetime64(f"{year}-12-31", "D")
    if start >= first:
        return start, end
    months = np.datetime64(str(last)[:7], "M") - np.timedelta64(11, "M")  # the last twelve months
    start = months.astype("datetime64[D]")
    if start >= first:
        log.warning("the series %s .. %s holds no full calendar year: the map covers its last twelve months "
                    "%s .. %s (set predict.period to choose)", first, last, start, last)
        return start, last
    log.warning("the series %s .. %s is shorter than a year: the map covers the whole series (set "
                "predict.period to choose)", first, last)
    return first, last


def map_period(times: np.ndarray, options: TargetOptions,
               attrs: Mapping[str, Any] | None = None) -> tuple[np.datetime64, np.datetime64]:
    """The period (start, end days) a map of the series ``times`` (store attrs ``attrs``) shows."""
    return resolve_period(options, *series_range(times, attrs))


def period_steps(times: np.ndarray, start: np.datetime64, end: np.datetime64) -> np.ndarray:
    """(time,) bool: the steps whose start day lies in ``start..end``."""
    days = np.asarray(times).astype("datetime64[D]")
    return (days >= start) & (days <= end)


def map_step(times: np.ndarray, options: TargetOptions, *, attrs: Mapping[str, Any] | None = None,
             time_steps: int | None = None) -> int:
    """Index of the step the map is made at: the last step (``last_date``), or the last step
    starting inside the period. Warns when a window of ``time_steps`` steps ending there starts
    after the period's start (the map then sees only the end of the period)."""
    if options.target == "last_date":
        return len(times) - 1
    start, end = map_period(times, options, attrs)
    inside = np.flatnonzero(period_steps(times, start, end))
    if inside.size == 0:
        first, last = series_range(times, attrs)
        raise ConfigError(f"no step of the series ({first} .. {last}) starts inside predict.period {start} .. {end}; "
                          f"widen predict.period or check cube.period")
    index = int(inside[-1])
    if time_steps is not None and index - time_steps + 1 > inside[0]:
        log.warning("the map window of time_steps=%d steps covers %d of the %d steps of the period %s .. %s; raise "
                    "train.time_steps to %d to classify the whole period", time_steps, time_steps, inside.size,
                    start, end, index - int(inside[0]) + 1)
    return index


def window_steps(first_day: dt.date, last_day: dt.date, period: str, options: TargetOptions) -> int:
    """Grid steps of the map's period for an AOI of ``first_day`` .. ``last_day`` on a grid of
    ``period`` (``cube.period``): the window length that makes a period map see its whole period."""
    grid = time_grid(first_day, last_day, period)
    start, end = resolve_period(options, np.datetime64(first_day, "D"), np.datetime64(last_day, "D"))
    return max(int(period_steps(grid.starts, start, end).sum()), 1)
