"""The class table: land-cover class ids, names and display colours.

The configuration's ``classes`` section is a list of ``{id, name, color}`` objects, e.g.
``[{"id": 1, "name": "cultivated", "color": "#e6c34a"}, ...]``. Ids are 1..254 (0 is reserved
for "unlabelled" in label rasters and "nodata" in classified maps, 255 is left free as a
common nodata value of other tools); names are unique non-empty strings; colours are
``#rrggbb``. The order of the list is the *class-table order* used everywhere else (model
output channels, confusion-matrix rows/columns, legends).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError

MIN_CLASS_ID = 1
MAX_CLASS_ID = 254
_COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
_KEYS = ("id", "name", "color")


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
        return [{"id": c.id, "name": c.name, "color": c.color} for c in self.classes]

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


def _validate(classes: tuple[LandCoverClass, ...]) -> None:
    if not classes:
        raise ConfigError("classes is empty; list at least one {id, name, color} class")
    seen_ids: set[int] = set()
    seen_names: set[str] = set()
    for c in classes:
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
            raise ConfigError(f"class id {c.id} appears twice in the class table; ids must be unique")
        if c.name in seen_names:
            raise ConfigError(f"class name {c.name!r} appears twice in the class table; names must be unique")
        seen_ids.add(c.id)
        seen_names.add(c.name)
