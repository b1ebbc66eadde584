"""Landsat Collection 2 Level-2 encodings: SR digital numbers and the QA_PIXEL bit layout.

SR bands are uint16 with reflectance = DN * 2.75e-05 - 0.2 and nodata 0. QA_PIXEL bits:
0 fill, 1 dilated cloud, 2 cirrus (high confidence), 3 cloud (high confidence),
4 cloud shadow (high confidence), 5 snow, 6 clear (neither cloud nor dilated cloud), 7 water,
8-9 cloud confidence, 10-11 cloud-shadow confidence, 12-13 snow/ice confidence,
14-15 cirrus confidence (0 not set, 1 low, 2 medium / reserved, 3 high). Fill pixels are 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SR_SCALE = 2.75e-05
SR_OFFSET = -0.2
SR_NODATA = 0
QA_NODATA = 1

FILL, DILATED_CLOUD, CIRRUS, CLOUD, CLOUD_SHADOW, SNOW, CLEAR, WATER = range(8)
"""Single-bit flags of QA_PIXEL (bit offsets)."""
CLOUD_CONFIDENCE, SHADOW_CONFIDENCE, SNOW_CONFIDENCE, CIRRUS_CONFIDENCE = 8, 10, 12, 14
"""Offsets of the 2-bit confidence fields of QA_PIXEL."""
LOW, MEDIUM, HIGH = 1, 2, 3

CLEAR_LAND = 21824
"""QA_PIXEL of a clear land pixel (clear, all confidences low)."""
CLEAR_WATER = 21952
"""QA_PIXEL of a clear water pixel."""
HIGH_CLOUD = 22280
"""QA_PIXEL of a high-confidence cloud pixel."""
SHADOW_LAND = 23888
"""QA_PIXEL of a high-confidence cloud-shadow pixel over land."""


def qa_bit(qa: np.ndarray, bit: int) -> np.ndarray:
    """Boolean array: whether ``bit`` of the uint16 QA values ``qa`` is set."""
    return ((np.asarray(qa).astype(np.uint16) >> np.uint16(bit)) & np.uint16(1)).astype(bool)


def qa_field(qa: np.ndarray, offset: int, length: int = 2) -> np.ndarray:
    """The unsigned ``length``-bit field at ``offset`` of the uint16 QA values (uint8)."""
    mask = np.uint16((1 << length) - 1)
    return ((np.asarray(qa).astype(np.uint16) >> np.uint16(offset)) & mask).astype(np.uint8)


def encode_qa_pixel(
    *,
    fill: np.ndarray,
    cloud: np.ndarray,
    cloud_confidence: np.ndarray,
    dilated: np.ndarray,
    shadow: np.ndarray,
    cirrus: np.ndarray,
    water: np.ndarray,
) -> np.ndarray:
    """Encode masks (all (y, x) bool, ``cloud_confidence`` uint8 1..3) into QA_PIXEL (y, x) uint16.

    The clear bit is set where neither cloud nor dilated cloud is; the water bit where
    ``water`` and not cloud; shadow, cirrus and cloud bits carry high confidence, the other
    confidences are low; snow is never flagged. Fill pixels are exactly 1.
    """
    cloud = np.asarray(cloud, bool)
    dilated = np.asarray(dilated, bool) & ~cloud
    conf = np.where(cloud, HIGH, np.clip(cloud_confidence, LOW, MEDIUM)).astype(np.uint16)
    qa = conf << CLOUD_CONFIDENCE
    qa |= np.where(shadow, HIGH, LOW).astype(np.uint16) << SHADOW_CONFIDENCE
    qa |= np.uint16(LOW << SNOW_CONFIDENCE)
    qa |= np.where(cirrus, HIGH, LOW).astype(np.uint16) << CIRRUS_CONFIDENCE
    qa |= dilated.astype(np.uint16) << DILATED_CLOUD
    qa |= np.asarray(cirrus, bool).astype(np.uint16) << CIRRUS
    qa |= cloud.astype(np.uint16) << CLOUD
    qa |= np.asarray(shadow, bool).astype(np.uint16) << CLOUD_SHADOW
    qa |= (~cloud & ~dilated).astype(np.uint16) << CLEAR
    qa |= (np.asarray(water, bool) & ~cloud).astype(np.uint16) << WATER
    return np.where(fill, np.uint16(QA_NODATA), qa).astype(np.uint16)


def reflectance_to_dn(refl: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Encode reflectance (band, y, x) float into SR digital numbers (band, y, x) uint16.

    DN = round((reflectance + 0.2) / 2.75e-05), clipped to 1..65535 (0 is nodata); pixels where
    ``fill`` (y, x) bool are 0.
    """
    dn = np.rint((np.asarray(refl, np.float64) - SR_OFFSET) / SR_SCALE)
    dn = np.clip(dn, 1, 65535).astype(np.uint16)
    dn[:, np.asarray(fill, bool)] = SR_NODATA
    return dn


def dn_to_reflectance(dn: np.ndarray) -> np.ndarray:
    """Decode SR digital numbers (any shape, uint16) to reflectance float32, NaN where 0."""
    dn = np.asarray(dn)
    refl = (dn.astype(np.float64) * SR_SCALE + SR_OFFSET).astype(np.float32)
    return np.where(dn == SR_NODATA, np.float32(np.nan), refl)


def _field(
    name: str, offset: int, length: int, description: str, classes: list[tuple[int, str, str]],
) -> dict[str, Any]:
    return {
        "name": name, "length": length, "offset": offset,
        "classes": [{"name": n, "value": v, "description": d} for v, n, d in classes],
        "description": description,
    }


def _confidence(name: str, offset: int, what: str, medium: str, description: str) -> dict[str, Any]:
    return _field(name, offset, 2, description, [
        (0, "not_set", "No confidence level set"),
        (1, "low", f"Low confidence {what}"),
        (2, medium, f"Medium confidence {what}" if medium == "medium" else "Reserved - value not used"),
        (3, "high", f"High confidence {what}"),
    ])


QA_PIXEL_BITFIELDS: list[dict[str, Any]] = [
    _field("fill", FILL, 1, "Image or fill data",
           [(0, "not_fill", "Image data"), (1, "fill", "Fill data")]),
    _field("dilated_cloud", DILATED_CLOUD, 1, "Dilated cloud",
           [(0, "not_dilated", "Cloud is not dilated or no cloud"), (1, "dilated", "Cloud dilation")]),
    _field("cirrus", CIRRUS, 1, "Cirrus mask",
           [(0, "not_cirrus", "Cirrus confidence is not high"), (1, "cirrus", "High confidence cirrus")]),
    _field("cloud", CLOUD, 1, "Cloud mask",
           [(0, "not_cloud", "Cloud confidence is not high"), (1, "cloud", "High confidence cloud")]),
    _field("cloud_shadow", CLOUD_SHADOW, 1, "Cloud shadow mask",
           [(0, "not_shadow", "Cloud shadow confidence is not high"), (1, "shadow", "High confidence cloud shadow")]),
    _field("snow", SNOW, 1, "Snow/Ice mask",
           [(0, "not_snow", "Snow/Ice confidence is not high"), (1, "snow", "High confidence snow cover")]),
    _field("clear", CLEAR, 1, "Clear mask",
           [(0, "not_clear", "Cloud or dilated cloud bits are set"),
            (1, "clear", "Cloud and dilated cloud bits are not set")]),
    _field("water", WATER, 1, "Water mask", [(0, "not_water", "Land or cloud"), (1, "water", "Water")]),
    _confidence("cloud_confidence", CLOUD_CONFIDENCE, "cloud", "medium", "Cloud confidence levels"),
    _confidence("cloud_shadow_confidence", SHADOW_CONFIDENCE, "cloud shadow", "reserved",
                "Cloud shadow confidence levels"),
    _confidence("snow_confidence", SNOW_CONFIDENCE, "snow/ice", "reserved", "Snow/Ice confidence levels"),
    _confidence("cirrus_confidence", CIRRUS_CONFIDENCE, "cirrus", "reserved", "Cirrus confidence levels"),
]
"""``classification:bitfields`` of the ``qa_pixel`` asset (as in the Planetary Computer items)."""
