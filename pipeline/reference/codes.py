"""Source label codes -> class ids of the class table (``labels.ignore_values``, ``labels.value_map``).

Label sources carry codes of their own (crop codes such as 1200 or 9120, fill values 0 or
255, ...). They become class ids in this order:

1. the raster's nodata value and every code of ``ignore_values`` -> 0 (unlabelled);
2. with a ``value_map``: every remaining code must be one of its keys and becomes its value,
   a class id of the table or 0 (= unlabelled, like ``ignore_values``);
   without one: every remaining code must be a class id of the table (rasters: 0 stays
   unlabelled, as before).

A code that maps to no class stops the stage with a :class:`LabelError` that lists every code
of the source with its pixel (or feature) count and names the keys that fix it. Rasters are
mapped *before* reprojection, so mode resampling counts class ids, not source codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from pipeline.errors import ConfigError, LabelError
from pipeline.reference.classes import ClassTable

# At most this many codes are listed one by one in an error message; the rest are summed up.
_MAX_LISTED = 256
# Integer codes spanning at most this many values are counted with np.bincount (no sort).
_BINCOUNT_SPAN = 1 << 20


@dataclass(frozen=True)
class LabelCodes:
    """How source codes become class ids: ``ignore_values`` (codes -> unlabelled) and
    ``value_map`` (code -> class id of the table, 0 = unlabelled; empty = codes are class ids)."""

    ignore_values: tuple[int, ...] = ()
    value_map: Mapping[int, int] = field(default_factory=dict)


def check_value_map(codes: LabelCodes, table: ClassTable) -> None:
    """Raise :class:`ConfigError` when a ``value_map`` target is neither 0 nor a class id of ``table``."""
    ids = set(table.ids())
    bad = {k: v for k, v in sorted(codes.value_map.items()) if v != 0 and v not in ids}
    if bad:
        pairs = ", ".join(f"{k} -> {v}" for k, v in bad.items())
        raise ConfigError(
            f"labels.value_map maps {pairs}, but {sorted(set(bad.values()))} are not class ids of "
            f"`classes` (ids {table.ids()}); map each code to a class id of the table (or to 0 for "
            "unlabelled), or add the missing classes to `classes`"
        )


def code_lookup(
    codes: np.ndarray,
    counts: np.ndarray,
    table: ClassTable,
    spec: LabelCodes,
    *,
    zero_is_unlabelled: bool,
    what: str,
    unit: str = "pixels",
) -> np.ndarray:
    """Class id of each source code.

    ``codes``: 1-D int64, the distinct codes of the source (sorted); ``counts``: 1-D, how many
    pixels/features hold each code (for the error message; ``unit`` names them).
    ``zero_is_unlabelled``: code 0 means unlabelled when no ``value_map`` is given (rasters).
    Returns 1-D uint8 aligned with ``codes``, 0 = unlabelled. Raises :class:`LabelError`
    naming every code that maps to no class, and :class:`ConfigError` for a bad ``value_map``.
    """
    check_value_map(spec, table)
    ignore = set(spec.ignore_values)
    if zero_is_unlabelled and not spec.value_map:
        ignore.add(0)
    target = dict(spec.value_map) if spec.value_map else {i: i for i in table.ids()}
    out = np.zeros(codes.size, dtype=np.uint8)
    unknown: list[int] = []
    for pos, code in enumerate(int(c) for c in codes):
        if code in ignore:
            continue
        if code in target:
            out[pos] = target[code]
        else:
            unknown.append(code)
    if unknown:
        raise LabelError(_unknown_message(unknown, codes, counts, table, spec, what=what, unit=unit))
    return out


def _unknown_message(
    unknown: list[int],
    codes: np.ndarray,
    counts: np.ndarray,
    table: ClassTable,
    spec: LabelCodes,
    *,
    what: str,
    unit: str,
) -> str:
    found = _listing(codes, counts, unit)
    ignored = f"labels.ignore_values {sorted(spec.ignore_values)}"
    if spec.value_map:
        return (
            f"{what} holds codes {_short(unknown)} that are neither keys of labels.value_map "
            f"(keys {sorted(spec.value_map)}) nor in {ignored}; codes found ({unit}): {found}. "
            "Fix: add each code to labels.value_map (source code -> class id of `classes`, "
            "0 = unlabelled) or to labels.ignore_values"
        )
    return (
        f"{what} holds class ids {_short(unknown)} that are not in the class table (ids {table.ids()}); "
        f"codes found ({unit}): {found}. Fix: map the source codes to class ids with labels.value_map "
        f"(e.g. {{{unknown[0]}: {table.ids()[0]}}}), mark fill codes as unlabelled with "
        f"labels.ignore_values (now {sorted(spec.ignore_values)}), or add the classes to `classes`"
    )


def _short(values: list[int]) -> str:
    if len(values) <= _MAX_LISTED:
        return str(values)
    return f"{values[:_MAX_LISTED]} (+{len(values) - _MAX_LISTED} more)"


def _listing(codes: np.ndarray, counts: np.ndarray, unit: str) -> str:
    """``"code: count, ..."`` for every code (the first ``_MAX_LISTED``, then a summary)."""
    parts = [f"{int(c)}: {int(n)}" for c, n in zip(codes[:_MAX_LISTED], counts[:_MAX_LISTED])]
    if codes.size > _MAX_LISTED:
        parts.append(f"... and {codes.size - _MAX_LISTED} more codes ({int(counts[_MAX_LISTED:].sum())} {unit})")
    return ", ".join(parts) if parts else "none"


def encode_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct codes of ``values`` (any integer array), their counts and each value's position.

    Returns ``(codes, counts, index)``: ``codes`` 1-D int64 sorted, ``counts`` 1-D int64,
    ``index`` shaped like ``values`` (intp) with ``codes[index] == values``.
    """
    vals = np.asarray(values).astype(np.int64, copy=False)
    if vals.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(vals.shape, dtype=np.intp)
    lo, hi = int(vals.min()), int(vals.max())
    if hi - lo < _BINCOUNT_SPAN:
        full = np.bincount((vals - lo).reshape(-1), minlength=hi - lo + 1)
        present = np.flatnonzero(full)
        position = np.cumsum(full > 0) - 1
        return present.astype(np.int64) + lo, full[present].astype(np.int64), position[vals - lo]
    codes, index, counts = np.unique(vals, return_inverse=True, return_counts=True)
    return codes.astype(np.int64), counts.astype(np.int64), index.reshape(vals.shape)


def codes_to_class_ids(
    values: np.ndarray,
    table: ClassTable,
    spec: LabelCodes,
    *,
    zero_is_unlabelled: bool,
    what: str,
    unit: str = "pixels",
) -> np.ndarray:
    """Map integer source codes ``values`` (any shape) to class ids (same shape, uint8, 0 = unlabelled)."""
    codes, counts, index = encode_codes(values)
    lut = code_lookup(codes, counts, table, spec, zero_is_unlabelled=zero_is_unlabelled, what=what, unit=unit)
    return lut[index] if codes.size else np.zeros(np.shape(values), dtype=np.uint8)

