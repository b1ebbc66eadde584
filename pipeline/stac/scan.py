"""Finding the scenes in a folder of GeoTIFFs: acquisition dates and asset keys from file names.

Each raster file (``*.tif`` / ``*.tiff``, searched recursively) is matched against a regular
expression (``pattern``, searched in the file's path relative to the folder, ``/``-separated)
with named groups:

``date`` (required)
    the acquisition date, parsed with ``date_format`` (strptime) or, without it, as
    ``YYYY-MM-DD``, ``YYYYMMDD``, ``YYYYDDD`` (day of year) or an ISO 8601 date-time;
``asset`` (optional)
    the asset key: files of the same date (and scene) are grouped into one item, one asset
    each. Without it every file is an item of its own whose single asset is ``image``;
``scene`` (optional)
    tells apart items of the same date (e.g. path/row or tile id).

Without ``pattern`` the date is the first ``YYYY-MM-DD``, ``YYYYMMDD`` or ``YYYYDDD`` (digits not
part of a longer number) in the file name, else in its folder names (nearest first).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import IndexingError

RASTER_SUFFIXES = (".tif", ".tiff")
DEFAULT_ASSET = "image"
DATE_TOKEN = re.compile(r"(?<![0-9])([0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{8}|[0-9]{7})(?![0-9])")
ASSET_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class SceneFile:
    """One raster file of an acquisition: ``when`` (naive = date only, or UTC), asset key, scene."""

    path: Path
    when: dt.datetime
    asset: str = DEFAULT_ASSET
    scene: str = ""
    has_time: bool = False


def find_rasters(folder: Path, *, exclude: Sequence[Path] = ()) -> list[Path]:
    """GeoTIFF files under ``folder`` (recursive, sorted), skipping those under ``exclude``."""
    skip = [p.resolve() for p in exclude]
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in RASTER_SUFFIXES:
            continue
        real = path.resolve()
        if any(real == s or s in real.parents for s in skip):
            continue
        if any(part.startswith(".tmp-") for part in path.relative_to(folder).parts):
            continue  # leftovers of interrupted writes (pipeline.atomic)
        found.append(path)
    return found


def parse_date(text: str, date_format: str | None) -> tuple[dt.datetime, bool] | None:
    """``(datetime, has_time)`` for ``text``, or None when it is not a date in a known format."""
    if date_format:
        try:
            when = dt.datetime.strptime(text, date_format)
        except ValueError:
            return None
        return when, any(code in date_format for code in ("%H", "%I", "%M", "%S", "%X", "%c"))
    formats = {10: "%Y-%m-%d", 8: "%Y%m%d", 7: "%Y%j"}
    if len(text) in formats:
        try:
            when = dt.datetime.strptime(text, formats[len(text)])
        except ValueError:
            return None
        return (when, False) if 1950 <= when.year <= 2100 else None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when, True


def _auto_date(rel: Path) -> tuple[dt.datetime, bool] | None:
    for name in (rel.name, *(p.name for p in rel.parents if p.name)):
        for token in DATE_TOKEN.findall(name):
            parsed = parse_date(token, None)
            if parsed is not None:
                return parsed
    return None


def _match(path: Path, folder: Path, pattern: re.Pattern[str] | None,
           date_format: str | None) -> SceneFile | None:
    rel = path.relative_to(folder)
    if pattern is None:
        parsed = _auto_date(rel)
        return None if parsed is None else SceneFile(path, parsed[0], has_time=parsed[1])
    m = pattern.search(rel.as_posix())
    if m is None:
        return None
    text = m.group("date")
    parsed = parse_date(text, date_format)
    if parsed is None:
        how = f"--date-format {date_format!r}" if date_format else "YYYY-MM-DD, YYYYMMDD, YYYYDDD or ISO 8601"
        raise IndexingError(f"{path}: the date group of --pattern matched {text!r}, which is not a date "
                            f"({how}); fix the (?P<date>...) group or pass --date-format (strptime codes)")
    asset = m.groupdict().get("asset") or DEFAULT_ASSET
    if not ASSET_KEY.match(asset):
        raise IndexingError(f"{path}: the asset group of --pattern matched {asset!r}; asset keys may hold "
                            f"letters, digits, '_' and '-' only (odc-stac reads 'key.N' as band N): "
                            f"narrow the (?P<asset>...) group")
    return SceneFile(path, parsed[0], asset, m.groupdict().get("scene") or "", parsed[1])


def compile_pattern(pattern: str | None, date_format: str | None) -> re.Pattern[str] | None:
    """The ``--pattern`` regex, checked for its ``date`` group (and ``--date-format`` for a pattern)."""
    if pattern is None:
        if date_format:
            raise IndexingError("--date-format needs --pattern with a (?P<date>...) group to apply to; "
                                "give both, or neither (dates are then found in the file names)")
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise IndexingError(f"--pattern {pattern!r} is not a valid regular expression ({exc})") from exc
    if "date" not in compiled.groupindex:
        raise IndexingError(f"--pattern {pattern!r} has no (?P<date>...) group; add one around the date in the "
                            f"file names, e.g. '(?P<date>[0-9]{{8}})_(?P<asset>[a-z0-9]+)\\.tif$'")
    return compiled


def match_files(files: Iterable[Path], folder: Path, *, pattern: re.Pattern[str] | None,
                date_format: str | None = None) -> tuple[list[SceneFile], list[Path]]:
    """``(matched, unmatched)``: each file's date/asset/scene, and the files the pattern misses."""
    matched, unmatched = [], []
    for path in files:
        scene = _match(path, folder, pattern, date_format)
        if scene is None:
            unmatched.append(path)
        else:
            matched.append(scene)
    return matched, unmatched


def group_scenes(files: Iterable[SceneFile]) -> dict[tuple[dt.datetime, str], dict[str, SceneFile]]:
    """Files grouped into items: ``(when, scene) -> {asset key: file}``, in date order.

    Two files with the same date, scene and asset raise :class:`IndexingError` naming both.
    """
    groups: dict[tuple[dt.datetime, str], dict[str, SceneFile]] = {}
    for f in files:
        assets = groups.setdefault((f.when, f.scene), {})
        if f.asset in assets:
            other = assets[f.asset].path
            raise IndexingError(
                f"two files for date {f.when.date().isoformat()}{f' scene {f.scene!r}' if f.scene else ''} and asset "
                f"'{f.asset}': {other} and {f.path}; remove one, or tell them apart with a (?P<asset>...) or "
                f"(?P<scene>...) group in --pattern"
            )
        assets[f.asset] = f
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])))
