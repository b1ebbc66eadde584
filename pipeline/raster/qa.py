"""Decoding quality assets into validity masks (pure, works on numpy, dask and xarray).

Landsat Collection 2 ``QA_PIXEL`` (uint16) bits: 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud,
4 cloud shadow, 5 snow, 6 clear, 7 water, 8-9 cloud confidence, 10-11 cloud shadow confidence,
12-13 snow/ice confidence, 14-15 cirrus confidence (2-bit levels 0 none, 1 low, 2 medium, 3 high).
Class-valued masks (e.g. Fmask: 0 clear, 1 water, 2 shadow, 3 snow, 4 cloud, 255 fill) are
decoded by value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeVar

import numpy as np

QA_PIXEL_BITS: dict[str, int] = {
    "fill": 0,
    "dilated_cloud": 1,
    "cirrus": 2,
    "cloud": 3,
    "cloud_shadow": 4,
    "snow": 5,
    "clear": 6,
    "water": 7,
}
QA_PIXEL_CONFIDENCE: dict[str, int] = {  # offset of each 2-bit confidence field
    "cloud_confidence": 8,
    "cloud_shadow_confidence": 10,
    "snow_confidence": 12,
    "cirrus_confidence": 14,
}
DEFAULT_INVALID_BITS: tuple[int, ...] = (0, 1, 2, 3, 4)

A = TypeVar("A")


def bit_mask(bits: Sequence[int]) -> int:
    """The integer with ``bits`` set, e.g. ``(0, 3) -> 0b1001``."""
    mask = 0
    for b in bits:
        if not 0 <= int(b) <= 15:
            raise ValueError(f"QA bit {b} outside 0..15")
        mask |= 1 << int(b)
    return mask


def invalid_from_bits(qa: A, bits: Sequence[int]) -> A:
    """True where any of ``bits`` is set in ``qa`` (integer array, any shape) -> bool array."""
    return (qa & bit_mask(bits)) != 0  # type: ignore[operator,return-value]


def invalid_from_values(qa: A, values: Sequence[int]) -> A:
    """True where ``qa`` equals one of ``values`` (class-valued masks such as Fmask) -> bool array."""
    out = qa != qa  # all False, same type/shape (works for numpy, dask, xarray)  # noqa: PLR0124
    for v in values:
        out = out | (qa == v)  # type: ignore[operator]
    return out  # type: ignore[return-value]


def invalid_mask(qa: A, *, decode: Literal["bits", "values"], bits: Sequence[int] = DEFAULT_INVALID_BITS,
                 values: Sequence[int] = (), nodata: int | None = None) -> A:
    """Invalid-pixel mask of a quality array under the configured decoding; ``nodata`` is always invalid."""
    if decode == "bits":
        out = invalid_from_bits(qa, bits)
    elif decode == "values":
        out = invalid_from_values(qa, values)
    else:  # pragma: no cover - guarded by the config schema
        raise ValueError(f"unknown QA decoding {decode!r}")
    if nodata is not None:
        out = out | (qa == nodata)  # type: ignore[operator]
    return out


def qa_flags(qa: np.ndarray) -> dict[str, np.ndarray]:
    """Every QA_PIXEL flag of a uint16 array: bool arrays for bits, uint8 0-3 for confidences."""
    qa = np.asarray(qa).astype(np.uint16)
    flags: dict[str, np.ndarray] = {name: (qa >> bit) & 1 == 1 for name, bit in QA_PIXEL_BITS.items()}
    for name, offset in QA_PIXEL_CONFIDENCE.items():
        flags[name] = ((qa >> offset) & 0b11).astype(np.uint8)
    return flags
