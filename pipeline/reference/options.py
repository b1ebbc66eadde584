"""Options of the labels stage (the config's ``labels`` section, ``--options '<json>'``)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from pipeline.errors import ConfigError
from pipeline.reference.codes import LabelCodes

LabelFormat = Literal["auto", "raster", "vector"]
_FORMATS = ("auto", "raster", "vector")
_REMOVALS = ("chronological", "random")
_INT_TEXT = re.compile(r"\s*[+-]?\d+\s*")
_MAX_CLASS_ID = 254


@dataclass(frozen=True)
class LabelOptions:
    """How to read the reference labels and how scarce to make them.

    source
        Label rasters: a folder of GeoTIFFs (``*.tif``/``*.tiff``, one per date, the date in
        the file name as ``YYYY-MM-DD`` or ``YYYYMMDD``) or one GeoTIFF. Label vectors: one
        GeoPackage / GeoJSON / Shapefile (any CRS). Relative paths are relative to the
        working directory. Required.
    format
        ``"raster"``, ``"vector"`` or ``"auto"`` (default: a folder or ``.tif``/``.tiff`` is
        raster, anything else vector).
    class_field
        Vector attribute holding the class id (integer) or the class name (default ``"class"``).
    date_field
        Vector attribute holding the label date (default ``"date"``). ``null`` = the labels
        have no date and apply to every cube date (static labels); features whose date is
        empty are static too. Dated labels overwrite static ones where both label a pixel.
    dates
        Optional ``{file name: "YYYY-MM-DD"}`` for label rasters whose names hold no date or
        several (default none).
    date_tolerance_days
        A label matches the nearest cube date at most this many days away (default 0 = the
        same calendar day). Labels matching no cube date are logged and listed in the store's
        attrs ``unmatched_label_dates``.
    date_fraction
        Share of the labelled dates kept, rounded down as in the paper (default 1.0; the
        paper's experiments use 1.0 / 0.5 / 0.2 / 0.1).
    date_removal
        ``"chronological"`` (default: the earliest dates are removed, the most recent kept,
        as in the paper) or ``"random"`` (seeded).
    pixel_fraction
        Share of the labelled pixels kept per date and class, at least one each (default 1.0).
    points_per_class
        Instead of ``pixel_fraction``: at most this many labelled pixels per date and class
        (default none).
    seed
        Seed of the random choices (default 0).
    static
        The label source has no date: one land-cover raster (or a vector file without
        ``date_field``) that labels every step of the map's period (``predict.period``; every
        date with ``predict.target: last_date``). Label scarcity then keeps the same pixels at
        every step, as a field survey would (default false: rasters are dated by their names).
    ignore_values
        Source codes that mean "unlabelled", besides a raster's nodata value (default none),
        e.g. ``[0, 255]``. Applied first, to rasters and to numeric vector ``class_field``
        values (vector features with such a code are dropped).
    value_map
        ``{source code: class id}`` (default none: the sources hold class ids of the table).
        When given, every code of the source that is not nodata or in ``ignore_values`` must
        be a key; values are class ids of the table, or 0 = unlabelled. Keys may be integers
        or integer strings (JSON object keys are strings: ``{"11": 1}``). Codes are not limited
        to 0..255 (rasters are read in their native dtype). Rasters are mapped before
        reprojection, so mode resampling sees class ids. Vector class names keep working.

    Example: a uint16 crop-code raster (1200 = wheat, 1300 = maize, 9120 = forest, 0 = fill,
    65535 = no data) with the classes ``cultivated`` (1) and ``forest`` (2)::

        labels:
          source: resources/labels/crops_2021-06-01.tif
          ignore_values: [0, 65535]
          value_map: {1200: 1, 1300: 1, 9120: 2}

    A pixel of code 1300 becomes class 1, one of code 0 unlabelled; a code missing from
    ``value_map`` (e.g. 5000) stops the stage with every code of the raster and its pixel count.
    """

    source: str
    format: LabelFormat = "auto"
    class_field: str = "class"
    date_field: str | None = "date"
    dates: Mapping[str, str] = field(default_factory=dict)
    date_tolerance_days: int = 0
    date_fraction: float = 1.0
    date_removal: Literal["chronological", "random"] = "chronological"
    pixel_fraction: float = 1.0
    points_per_class: int | None = None
    seed: int = 0
    static: bool = False
    ignore_values: tuple[int, ...] = ()
    value_map: Mapping[int, int] = field(default_factory=dict)

    @property
    def codes(self) -> LabelCodes:
        """The code mapping (``ignore_values``, ``value_map``) for the readers."""
        return LabelCodes(ignore_values=self.ignore_values, value_map=dict(self.value_map))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> LabelOptions:
        """Validate ``raw`` (the JSON object) into options; :class:`ConfigError` when invalid."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"labels options must be a JSON object, got {type(raw).__name__}")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown labels option(s) {unknown}; allowed keys: {allowed}")
        if "source" not in raw:
            raise ConfigError("labels option 'source' is required: a folder of label GeoTIFFs or a vector file")
        opts = dict(raw)
        _expect_str(opts, "source", allow_empty=False)
        _expect_choice(opts, "format", _FORMATS)
        _expect_str(opts, "class_field", allow_empty=False)
        if opts.get("date_field") is not None:
            _expect_str(opts, "date_field", allow_empty=False)
        if "dates" in opts:
            d = opts["dates"]
            ok = isinstance(d, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in d.items())
            if not ok:
                raise ConfigError(
                    f"labels option 'dates' must map file names to 'YYYY-MM-DD' strings, got {d!r}"
                )
            opts["dates"] = dict(d)
        _expect_int(opts, "date_tolerance_days", minimum=0)
        _expect_fraction(opts, "date_fraction")
        _expect_choice(opts, "date_removal", _REMOVALS)
        _expect_fraction(opts, "pixel_fraction")
        if opts.get("points_per_class") is not None:
            _expect_int(opts, "points_per_class", minimum=1)
        _expect_int(opts, "seed", minimum=None)
        if not isinstance(opts.get("static", False), bool):
            raise ConfigError(f"labels option 'static' must be true or false, got {opts['static']!r}")
        if opts.get("points_per_class") is not None and float(opts.get("pixel_fraction", 1.0)) < 1.0:
            raise ConfigError(
                "labels options 'pixel_fraction' < 1 and 'points_per_class' exclude each other; set one"
            )
        _expect_codes(opts)
        if "date_fraction" in opts:
            opts["date_fraction"] = float(opts["date_fraction"])
        if "pixel_fraction" in opts:
            opts["pixel_fraction"] = float(opts["pixel_fraction"])
        return cls(**opts)

    @classmethod
    def from_json(cls, text: str) -> LabelOptions:
        """Parse the stage's ``--options`` JSON text."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"labels --options is not valid JSON ({exc}); pass one JSON object") from exc
        return cls.from_mapping(raw)

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON-serialisable dict."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["dates"] = dict(self.dates)
        out["ignore_values"] = list(self.ignore_values)
        out["value_map"] = {str(k): v for k, v in sorted(self.value_map.items())}
        return out


def _expect_str(opts: dict[str, Any], key: str, *, allow_empty: bool) -> None:
    if key in opts and (not isinstance(opts[key], str) or (not allow_empty and not opts[key].strip())):
        raise ConfigError(f"labels option {key!r} must be a non-empty string, got {opts[key]!r}")


def _expect_choice(opts: dict[str, Any], key: str, allowed: tuple[str, ...]) -> None:
    if key in opts and opts[key] not in allowed:
        raise ConfigError(f"labels option {key!r} is {opts[key]!r}; allowed values: {list(allowed)}")


def _expect_int(opts: dict[str, Any], key: str, *, minimum: int | None) -> None:
    if key not in opts:
        return
    v = opts[key]
    if isinstance(v, bool) or not isinstance(v, int) or (minimum is not None and v < minimum):
        bound = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise ConfigError(f"labels option {key!r} must be {bound}, got {v!r}")


def _expect_fraction(opts: dict[str, Any], key: str) -> None:
    if key not in opts:
        return
    v = opts[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < float(v) <= 1.0:
        raise ConfigError(f"labels option {key!r} must be a number in (0, 1], got {v!r}")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _expect_codes(opts: dict[str, Any]) -> None:
    """Validate and normalise ``ignore_values`` (-> sorted tuple) and ``value_map`` (-> {int: int})."""
    if "ignore_values" in opts:
        v = opts["ignore_values"]
        if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, (list, tuple)) or not all(map(_is_int, v)):
            raise ConfigError(
                f"labels option 'ignore_values' must be a list of integer source codes, got {v!r}; "
                "write e.g. [0, 255]"
            )
        opts["ignore_values"] = tuple(sorted(set(v)))
    if "value_map" not in opts:
        return
    raw = opts["value_map"]
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"labels option 'value_map' must map source codes to class ids, got {raw!r}; write e.g. {{11: 1, 13: 3}}"
        )
    mapped: dict[int, int] = {}
    for key, cid in raw.items():
        code = _code_key(key)
        if not _is_int(cid) or not 0 <= cid <= _MAX_CLASS_ID:
            raise ConfigError(
                f"labels option 'value_map' maps {key!r} to {cid!r}; values must be class ids "
                f"(integers 1..{_MAX_CLASS_ID} of `classes`) or 0 for unlabelled"
            )
        if code in mapped:
            raise ConfigError(f"labels option 'value_map' lists the code {code} twice ({key!r}); keep one entry")
        mapped[code] = cid
    both = sorted(set(mapped) & set(opts.get("ignore_values", ())))
    if both:
        raise ConfigError(
            f"labels options 'ignore_values' and 'value_map' both list the code(s) {both}; ignored codes "
            "are unlabelled before the map applies: remove them from one of the two"
        )
    opts["value_map"] = mapped


def _code_key(key: object) -> int:
    """A ``value_map`` key as an int: integers, or integer strings (JSON object keys)."""
    if _is_int(key):
        return int(key)  # type: ignore[call-overload]
    if isinstance(key, str) and _INT_TEXT.fullmatch(key):
        return int(key)
    raise ConfigError(
        f"labels option 'value_map' has the key {key!r}, which is no integer source code; "
        'keys are integer codes such as 11 or "11" (vector class names need no value_map)'
    )
