"""QA decoding against the documented Landsat C2 QA_PIXEL bit patterns."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from pipeline.raster.qa import bit_mask, invalid_mask, qa_flags

# Values from the USGS Landsat 8-9 C2 L2 Science Product Guide (Table 6-3) and the real scene.
CLEAR_LAND = 21824  # clear, low confidences
CLEAR_WATER = 21952  # clear + water
HIGH_CLOUD = 22280  # cloud bit, high cloud confidence (bits 3, 8-9, 10, 12, 14)
FILL = 1


def test_known_values_decode() -> None:
    flags = qa_flags(np.array([CLEAR_LAND, CLEAR_WATER, HIGH_CLOUD, FILL], dtype=np.uint16))
    assert flags["clear"].tolist() == [True, True, False, False]
    assert flags["water"].tolist() == [False, True, False, False]
    assert flags["cloud"].tolist() == [False, False, True, False]
    assert flags["dilated_cloud"].tolist() == [False, False, False, False]
    assert qa_flags(np.array([22280 | 2], dtype=np.uint16))["dilated_cloud"].tolist() == [True]
    assert flags["fill"].tolist() == [False, False, False, True]
    assert flags["cloud_confidence"].tolist() == [1, 1, 3, 0]
    assert flags["cirrus_confidence"].tolist() == [1, 1, 1, 0]


def test_invalid_mask_bits_numpy_and_dask_agree() -> None:
    rng = np.random.default_rng(0)
    qa = rng.integers(0, 2**16, size=(3, 40, 50), dtype=np.uint16)
    expected = np.zeros(qa.shape, bool)
    for b in (0, 1, 2, 3, 4):
        expected |= ((qa >> b) & 1).astype(bool)
    got = invalid_mask(qa, decode="bits", bits=(0, 1, 2, 3, 4), nodata=None)
    np.testing.assert_array_equal(got, expected)
    lazy = invalid_mask(da.from_array(qa, chunks=(1, 16, 16)), decode="bits", bits=(0, 1, 2, 3, 4), nodata=None)
    np.testing.assert_array_equal(lazy.compute(), expected)
    assert bit_mask((0, 3)) == 0b1001


def test_invalid_mask_values_for_fmask() -> None:
    fmask = np.array([0, 1, 2, 3, 4, 255], dtype=np.uint8)
    got = invalid_mask(fmask, decode="values", values=(2, 4), nodata=255)
    assert got.tolist() == [False, False, True, False, True, True]


def test_bit_out_of_range() -> None:
    with pytest.raises(ValueError, match="outside 0..15"):
        bit_mask((16,))
