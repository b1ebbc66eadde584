"""Dates of reference labels: parsing them and matching them to the cube's time axis.

Label dates are calendar days (``numpy.datetime64[D]``). The cube's time coordinate is
``datetime64[ns]`` (one entry per acquisition / solar day); a label matches the cube date
whose calendar day is nearest to it, if that is at most ``tolerance_days`` away
(``0`` = same day only).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.errors import LabelError

log = logging.getLogger(__name__)

_DATE_IN_NAME = re.compile(
    r"(?<!\d)(?P<iso>\d{4}-\d{2}-\d{2})(?!\d)|(?<!\d)(?P<compact>\d{8})(?!\d)"
)


def _valid_day(text: str, fmt: str) -> np.datetime64 | None:
    try:
        day = dt.datetime.strptime(text, fmt).date()
    except ValueError:
        return None
    return np.datetime64(day.isoformat(), "D")


def date_from_name(name: str) -> np.datetime64:
    """The calendar day written in a file name as ``YYYY-MM-DD`` or ``YYYYMMDD``.

    Raises :class:`LabelError` when the name holds no valid date or several different ones
    (e.g. Landsat product ids carry acquisition and processing dates).
    """
    days: set[np.datetime64] = set()
    for m in _DATE_IN_NAME.finditer(name):
        day = _valid_day(m["iso"], "%Y-%m-%d") if m["iso"] else _valid_day(m["compact"], "%Y%m%d")
        if day is not None:
            days.add(day)
    if len(days) != 1:
        what = "no date" if not days else f"several dates {sorted(str(d) for d in days)}"
        raise LabelError(
            f"label file name {name!r} holds {what}; name label rasters with one date "
            "(YYYY-MM-DD or YYYYMMDD, e.g. labels_2021-01-05.tif) or give the labels option "
            "'dates' mapping file names to dates"
        )
    return days.pop()


def parse_day(value: object, *, what: str) -> np.datetime64:
    """A calendar day from a date-like value (ISO string, ``YYYYMMDD`` string or integer,
    ``datetime``/``date``, ``numpy.datetime64``, ``pandas.Timestamp``).

    Time-zone aware values are converted to UTC first. ``what`` names the value in the
    :class:`LabelError` raised when it cannot be parsed.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = str(int(value))
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{8}", text):
            day = _valid_day(text, "%Y%m%d")
            if day is not None:
                return day
    try:
        ts = pd.Timestamp(value)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise LabelError(
            f"{what} {value!r} is not a date; write dates as YYYY-MM-DD (ISO 8601)"
        ) from exc
    if ts is pd.NaT or pd.isna(ts):
        raise LabelError(f"{what} is empty; write dates as YYYY-MM-DD (ISO 8601)")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return np.datetime64(ts.date().isoformat(), "D")


@dataclass(frozen=True)
class DateMatch:
    """Result of matching label days to cube dates.

    ``cube_index[i]`` is the cube time index label day ``i`` matched, or -1 when none is
    within the tolerance; ``unmatched`` lists those days (ISO strings).
    """

    cube_index: tuple[int, ...]
    unmatched: tuple[str, ...]


def match_dates(
    label_days: Sequence[np.datetime64],
    cube_times: np.ndarray,
    *,
    tolerance_days: int,
) -> DateMatch:
    """Match each label day to the nearest cube date within ``tolerance_days``.

    ``cube_times``: the cube's time coordinate, 1-D datetime64 (any unit). Ties between two
    cube dates equally far are resolved to the earlier one. Raises :class:`LabelError` when
    two different label days match the same cube date (their labels would overwrite each
    other), naming both.
    """
    cube_days = np.asarray(cube_times).astype("datetime64[D]")
    index: list[int] = []
    unmatched: list[str] = []
    owner: dict[int, np.datetime64] = {}
    for day in label_days:
        day = np.datetime64(day, "D")
        if cube_days.size == 0:
            index.append(-1)
            unmatched.append(str(day))
            continue
        gaps = np.abs((cube_days - day).astype(np.int64))
        best = int(np.argmin(gaps))
        if gaps[best] > tolerance_days:
            index.append(-1)
            unmatched.append(str(day))
            continue
        if best in owner and owner[best] != day:
            raise LabelError(
                f"label dates {owner[best]} and {day} both match cube date {cube_days[best]} "
                f"(date_tolerance_days={tolerance_days}); lower date_tolerance_days or drop one "
                "of the two label sets"
            )
        owner[best] = day
        index.append(best)
    if unmatched:
        log.warning(
            "%d label date(s) match no cube date within %d day(s) and are ignored: %s",
            len(unmatched), tolerance_days, ", ".join(unmatched),
        )
    return DateMatch(cube_index=tuple(index), unmatched=tuple(unmatched))


def match_steps(label_days: Sequence[np.datetime64], starts: np.ndarray, ends: np.ndarray) -> DateMatch:
    """Match each label day to the step of a regular time grid (:mod:`pipeline.timegrid`) that
    holds it: ``starts[i] <= day < ends[i]`` (datetime64, any unit; ``ends`` exclusive, from the
    store's ``time_grid.step_ends``). A step composites several acquisitions, so several label
    days may share it: the caller stacks them in date order (later labels win where both label).
    """
    first = np.asarray(starts).astype("datetime64[D]")
    last = np.asarray(ends).astype("datetime64[D]")
    index: list[int] = []
    unmatched: list[str] = []
    for day in label_days:
        day = np.datetime64(day, "D")
        i = int(np.searchsorted(first, day, side="right")) - 1
        if i < 0 or day >= last[i]:
            index.append(-1)
            unmatched.append(str(day))
        else:
            index.append(i)
    if unmatched:
        log.warning("%d label date(s) lie outside the time grid %s .. %s and are ignored: %s", len(unmatched),
                    first[0] if first.size else "-", last[-1] if last.size else "-", ", ".join(unmatched))
    shared = len(index) - len(set(index) - {-1}) - index.count(-1)
    if shared:
        log.info("%d label date(s) share a grid step with another: stacked in date order", shared)
    return DateMatch(cube_index=tuple(index), unmatched=tuple(unmatched))
