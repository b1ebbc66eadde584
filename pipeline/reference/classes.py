"""The class table: land-cover class ids, names and display colours.

The configuration's ``classes`` section is a list of ``{id, name, color}`` objects, e.g.
``[{"id": 1, "name": "cultivated", "color": "#e6c34a"}, ...]``. Ids are 1..254 (0 is reserved
for "unlabelled" in label rasters and "nodata" in classified maps, 255 is left free as a
common nodata value of other tools); names are unique non-empty strings; colours are
``#rrggbb``. The order of the list is the *class-table order* used everywhere else (model
output channels, confusion-matrix rows/columns, legends).

:class:`LandCoverClass` is the one class-row type of the pipeline and
:meth:`LandCoverClass.to_config` its one serialisation: the train options and the model
metadata store it, and the map writers (COG colour table and categories
:mod:`pipeline.raster.cog`, QGIS style :mod:`pipeline.raster.qgis_style`, STAC item
:mod:`pipeline.raster.map_item`) read it back through :func:`as_class_table`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import ConfigError

MIN_CLASS_ID = 1
MAX_CLASS_ID = 254
_COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
_HEX_RE = re.compile(r"^#?([0-9a-fA-F]{6})$")
_KEYS = ("id", "name", "color")

#: What :func:`as_class_table` accepts: a :class:`ClassTable`, the config list of
#: ``{id, name, color}`` mappings (e.g. the model metadata), objects with those attributes, or
#: an object offering ``ids()``, ``names()`` and ``colors`` (method or attribute).
ClassTableLike = Iterable[Mapping[str, Any]] | Iterable[Any]


@dataclass(frozen=True)
class LandCoverClass:
    """One class: ``id`` (1..254), ``name`` and ``color`` (``#rrggbb``, lower case)."""

    id: int
    name: str
    color: str

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The colour as 8-bit ``(r, g, b)``."""
        return (int(self.color[1:3], 16), int(self.color[3:5], 16), int(self.color[5:7], 16))

    @property
    def rgba(self) -> tuple[int, int, int, int]:
        """The colour as 8-bit ``(r, g, b, 255)`` (classes are opaque; COG colour table, QML)."""
        return (*self.rgb, 255)

    @property
    def hex(self) -> str:
        """The colour as ``RRGGBB`` (upper case, no ``#``; STAC ``color_hint``)."""
        return self.color[1:].upper()

    def to_config(self) -> dict[str, Any]:
        """The class as its config / model-metadata object ``{"id", "name", "color"}``."""
        return {"id": self.id, "name": self.name, "color": self.color}


@dataclass(frozen=True)
class ClassTable:
    """An ordered, validated set of land-cover classes (build with :meth:`from_config`)."""

    classes: tuple[LandCoverClass, ...]

    def __post_init__(self) -> None:
        _validate(self.classes)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_config(cls, entries: Sequence[Mapping[str, Any]]) -> ClassTable:
        """Build the table from the config list of ``{id, name, color}`` mappings.

        Raises :class:`ConfigError` on an empty list, a missing or unknown key, an id outside
        1..254, a duplicate id or name, or a colour not of the form ``#rrggbb``.
        """
        if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
            raise ConfigError(
                f"classes must be a list of {{id, name, color}} objects, got {type(entries).__name__}; "
                'write e.g. [{"id": 1, "name": "cultivated", "color": "#e6c34a"}]'
            )
        if not entries:
            raise ConfigError("classes is empty; list at least one {id, name, color} class")
        parsed: list[LandCoverClass] = []
        for pos, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise ConfigError(
                    f"classes[{pos}] must be an object with keys {list(_KEYS)}, got {entry!r}"
                )
            unknown = sorted(set(entry) - set(_KEYS))
            missing = [k for k in _KEYS if k not in entry]
            if unknown or missing:
                raise ConfigError(
                    f"classes[{pos}] has unknown keys {unknown} / lacks keys {missing}; "
                    f"each class needs exactly {list(_KEYS)}"
                )
            cid, name, color = entry["id"], entry["name"], entry["color"]
            if isinstance(cid, bool) or not isinstance(cid, int):
                raise ConfigError(
                    f"classes[{pos}].id must be an integer {MIN_CLASS_ID}..{MAX_CLASS_ID}, got {cid!r}"
                )
            if not isinstance(name, str):
                raise ConfigError(f"classes[{pos}].name must be a string, got {name!r}")
            if not isinstance(color, str):
                raise ConfigError(f"classes[{pos}].color must be a '#rrggbb' string, got {color!r}")
            parsed.append(LandCoverClass(id=cid, name=name.strip(), color=color.lower()))
        return cls(tuple(parsed))

    @classmethod
    def from_json(cls, text: str) -> ClassTable:
        """Build the table from a JSON list (the stages' ``--classes`` argument)."""
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"classes is not valid JSON ({exc}); pass a JSON list of {{id, name, color}} objects"
            ) from exc
        return cls.from_config(entries)

    def to_config(self) -> list[dict[str, Any]]:
        """The table as the config list (JSON-serialisable), in class-table order."""
        return [c.to_config() for c in self.classes]

    def colormap(self, nodata: int = 0) -> dict[int, tuple[int, int, int, int]]:
        """The raster colour table: ``nodata`` transparent, every class id its opaque colour."""
        return {nodata: (0, 0, 0, 0)} | {c.id: c.rgba for c in self.classes}

    # -- queries -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self) -> Iterator[LandCoverClass]:
        return iter(self.classes)

    def ids(self) -> list[int]:
        """Class ids in class-table order."""
        return [c.id for c in self.classes]

    def names(self) -> list[str]:
        """Class names in class-table order."""
        return [c.name for c in self.classes]

    def colors(self) -> list[str]:
        """Colours as ``#rrggbb`` (lower case) in class-table order."""
        return [c.color for c in self.classes]

    def colors_rgb(self) -> list[tuple[int, int, int]]:
        """Colours as 8-bit ``(r, g, b)`` tuples in class-table order."""
        return [c.rgb for c in self.classes]

    def index_of(self, class_id: int) -> int:
        """Position of ``class_id`` in the table (e.g. the model output channel).

        Raises :class:`ConfigError` when the id is not in the table.
        """
        for i, c in enumerate(self.classes):
            if c.id == class_id:
                return i
        raise ConfigError(f"class id {class_id} is not in the class table (ids {self.ids()})")

    def name_of(self, class_id: int) -> str:
        """Name of ``class_id`` (raises :class:`ConfigError` when unknown)."""
        return self.classes[self.index_of(class_id)].name

    def id_of(self, name: str) -> int:
        """Id of the class called ``name`` (raises :class:`ConfigError` when unknown)."""
        for c in self.classes:
            if c.name == name:
                return c.id
        raise ConfigError(f"class name {name!r} is not in the class table (names {self.names()})")


def parse_color(color: object) -> str:
    """``"#rrggbb"``, ``"rrggbb"`` or 3 ints 0..255 -> ``"#rrggbb"`` (lower case)."""
    if isinstance(color, str):
        m = _HEX_RE.match(color.strip())
        if m:
            return "#" + m.group(1).lower()
    elif isinstance(color, Sequence) and len(color) == 3:
        vals = [int(v) for v in color]  # type: ignore[call-overload]
        if all(0 <= v <= 255 for v in vals):
            return "#{:02x}{:02x}{:02x}".format(*vals)
    raise ConfigError(f"class colour {color!r} is not '#rrggbb' (or 3 ints 0..255); fix classes[].color")


def _field(entry: object, key: str) -> Any:
    if isinstance(entry, Mapping):
        return entry.get(key)
    return getattr(entry, key, None)


def as_class_table(class_table: ClassTableLike) -> ClassTable:
    """The :class:`ClassTable` of any :data:`ClassTableLike` (a table is returned as is).

    Rows need ``id``, ``name`` and ``color`` (see :func:`parse_color`); other keys are ignored.
    The table is validated like the config (:meth:`ClassTable.from_config`): ids unique in
    1..254, names unique and non-empty, else :class:`ConfigError`.
    """
    if isinstance(class_table, ClassTable):
        return class_table
    if all(hasattr(class_table, a) for a in ("ids", "names", "colors")):
        cols = [getattr(class_table, a) for a in ("ids", "names", "colors")]
        ids, names, colors = (list(c() if callable(c) else c) for c in cols)
        rows: list[object] = [{"id": i, "name": n, "color": c} for i, n, c in zip(ids, names, colors, strict=True)]
    elif isinstance(class_table, LandCoverClass):
        rows = [class_table]
    else:
        rows = list(class_table)
    parsed: list[LandCoverClass] = []
    for row in rows:
        if isinstance(row, LandCoverClass):
            parsed.append(row)
            continue
        cid, name = _field(row, "id"), _field(row, "name")
        if isinstance(cid, bool) or not isinstance(cid, int | np.integer):
            raise ConfigError(
                f"class id {cid!r} must be an integer {MIN_CLASS_ID}..{MAX_CLASS_ID} (0 is nodata); fix classes[].id"
            )
        if not isinstance(name, str):
            raise ConfigError(f"class {cid} has no name; give every entry of config 'classes' a name")
        parsed.append(LandCoverClass(id=int(cid), name=name.strip(), color=parse_color(_field(row, "color"))))
    return ClassTable(tuple(parsed))


def _validate(classes: tuple[LandCoverClass, ...]) -> None:
    if not classes:
        raise ConfigError("classes is empty; list at least one {id, name, color} class")
    seen_ids: set[int] = set()
    seen_names: set[str] = set()
    for c in classes:
        if c.id == MAX_CLASS_ID + 1:
            raise ConfigError(
                f"class id {c.id} ({c.name!r}) is outside {MIN_CLASS_ID}..{MAX_CLASS_ID}: 255 is the nodata value "
                "of many label rasters and tools, and 0 is unlabelled/nodata - renumber the class to a free id "
                f"in {MIN_CLASS_ID}..{MAX_CLASS_ID}"
            )
        if isinstance(c.id, bool) or not isinstance(c.id, int) or not MIN_CLASS_ID <= c.id <= MAX_CLASS_ID:
            raise ConfigError(
                f"class id {c.id!r} ({c.name!r}) is outside {MIN_CLASS_ID}..{MAX_CLASS_ID}; "
                "0 is reserved for unlabelled/nodata - renumber the class"
            )
        if not c.name:
            raise ConfigError(f"class id {c.id} has an empty name; give every class a name")
        if not _COLOR_RE.match(c.color):
            raise ConfigError(
                f"class {c.name!r} has colour {c.color!r}; write colours as '#rrggbb' (e.g. '#e6c34a')"
            )
        if c.id in seen_ids:
            raise ConfigError(
                f"class id {c.id} appears twice in the class table; list each id once (no id more than once)"
            )
        if c.name in seen_names:
            raise ConfigError(
                f"class name {c.name!r} appears twice in the class table; list each name once (no name more than once)"
            )
        seen_ids.add(c.id)
        seen_names.add(c.name)
