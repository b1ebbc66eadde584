"""Disk-backed and lazily converted rasters (the predict stage's full-size arrays): the same
values as in-memory arrays, and the COG writers write the same pixels from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from pipeline.errors import PredictionError
from pipeline.inference.prediction import classify_block
from pipeline.raster import cog
from pipeline.raster.cog import (
    write_class_cog,
    write_confidence_cog,
    write_count_cog,
    write_probability_cog,
)
from pipeline.raster.disk_array import DiskArray, RowMap

GRID = {"crs": "EPSG:32649", "transform": Affine(30.0, 0.0, 600000.0, 0.0, -30.0, 3400020.0)}
CLASSES = [{"id": 1, "name": "cultivated", "color": "#e6c34a"}, {"id": 2, "name": "forest", "color": "#1b7837"},
           {"id": 4, "name": "water", "color": "#2166ac"}]


def test_disk_array_reads_and_writes_slices(tmp_path: Path) -> None:
    a = DiskArray(tmp_path / "a.npy", (3, 5, 7), np.float32)
    assert (a.shape, a.dtype, a.ndim, a.size) == ((3, 5, 7), np.float32, 3, 105)
    ref = np.zeros((3, 5, 7), np.float32)
    for key, value in (((slice(None), slice(1, 3), slice(2, 6)), 1.5), ((1, 4), np.arange(7)), ((..., 0), np.nan)):
        a[key] = value
        ref[key] = value
    np.testing.assert_array_equal(np.asarray(a), ref)
    np.testing.assert_array_equal(a[:, 2:4], ref[:, 2:4])
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), ref)  # a plain .npy file
    np.testing.assert_array_equal(np.asarray(DiskArray(tmp_path / "a.npy", create=False)), ref)


def test_row_map_converts_row_blocks_only() -> None:
    src = np.arange(2 * 6 * 4, dtype=np.int64).reshape(2, 6, 4)
    m = RowMap(src, lambda b: (b * 2).astype(np.int16), shape=src.shape, dtype=np.int16)
    np.testing.assert_array_equal(m[:, 1:4], src[:, 1:4] * 2)
    np.testing.assert_array_equal(m[..., 2:5, :], src[:, 2:5] * 2)
    np.testing.assert_array_equal(np.asarray(m), src * 2)
    assert m[:, 0:2].dtype == np.int16
    with pytest.raises(IndexError):
        m[0]
    with pytest.raises(IndexError):
        m[:, :, 1:2]


def _pixels(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def test_writers_write_the_same_pixels_from_disk_backed_and_lazy_arrays(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cog, "ROWS_PER_WRITE", 16)  # several row blocks
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(50, 40)).transpose(2, 0, 1).astype(np.float32)
    probs[:, :5, :7] = np.nan
    count = rng.integers(0, 12, (50, 40)).astype(np.int32)
    count[:5, :7] = 0
    ids = np.array([c["id"] for c in CLASSES], np.uint8)
    class_map, confidence = classify_block(probs, ids)
    disk_probs, disk_count = DiskArray(tmp_path / "p.npy", probs.shape, np.float32), DiskArray(
        tmp_path / "c.npy", count.shape, np.int32)
    disk_probs[:], disk_count[:] = probs, count
    lazy_classes = RowMap(disk_probs, lambda b: classify_block(b, ids)[0], shape=count.shape, dtype=np.uint8)
    lazy_confidence = RowMap(disk_probs, lambda b: classify_block(b, ids)[1], shape=count.shape, dtype=np.float32)
    for name, write, eager, lazy, kw in (
            ("p", write_probability_cog, probs, disk_probs, {"class_table": CLASSES}),
            ("k", write_class_cog, class_map, lazy_classes, {"class_table": CLASSES}),
            ("f", write_confidence_cog, confidence, lazy_confidence, {}),
            ("n", write_count_cog, count, disk_count, {})):
        a, b = write(eager, tmp_path / f"{name}_eager.tif", **GRID, **kw), write(lazy, tmp_path / f"{name}_lazy.tif",
                                                                                 **GRID, **kw)
        np.testing.assert_array_equal(_pixels(a), _pixels(b))
    assert (_pixels(tmp_path / "k_lazy.tif")[0, :5, :7] == 0).all()


def test_lazy_values_out_of_range_stop_the_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cog, "ROWS_PER_WRITE", 16)
    probs = DiskArray(tmp_path / "p.npy", (3, 40, 8), np.float32)
    probs[:] = 1 / 3
    probs[1, 35, 2] = 1.5  # in the last row block
    out = tmp_path / "probabilities.tif"
    with pytest.raises(PredictionError, match=r"must lie in \[0, 1\]"):
        write_probability_cog(probs, out, class_table=CLASSES, **GRID)
    assert not out.exists() and not list(tmp_path.glob("*.tif*"))
    counts = DiskArray(tmp_path / "n.npy", (40, 8), np.int32)
    counts[39, 7] = 70000
    with pytest.raises(PredictionError, match="counts reach 70000"):
        write_count_cog(counts, tmp_path / "valid_count.tif", **GRID)
