"""Tiled prediction with a halo equals full-image prediction exactly (pipeline.tiling.predict,
pipeline.tiling.windows)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import correlate

from pipeline.errors import ConfigError, PredictionError
from pipeline.tiling.predict import predict_tiled, stitch
from pipeline.tiling.windows import Tile, Window, redundancy, tile_windows

SHAPE = (83, 129)


def _conv_model(kernels: list[np.ndarray]):
    """A zero-padded 'same' CNN: per layer, output channel o = sum_c correlate(x[c], k[o, c]),
    followed by a pointwise nonlinearity. Receptive-field radius = sum of kernel radii."""

    def f(x: np.ndarray) -> np.ndarray:
        for k in kernels:
            x = np.stack([
                sum(correlate(x[c], k[o, c], mode="constant", cval=0.0) for c in range(k.shape[1]))
                for o in range(k.shape[0])
            ])
            x = np.maximum(x, 0.0) - 0.25 * np.minimum(x, 0.0)
        return x

    return f


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    # Integer-valued float64 keeps every sum exact, so equality is bitwise.
    return np.random.default_rng(0).integers(-8, 9, size=(2, *SHAPE)).astype(np.float64)


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(1)
    k1 = rng.integers(-2, 3, size=(3, 2, 5, 5)).astype(np.float64)  # radius 2
    k2 = rng.integers(-2, 3, size=(4, 3, 3, 3)).astype(np.float64)  # radius 1
    return _conv_model([k1, k2]), 3


@pytest.mark.parametrize("tile", [17, 32, 100, (20, 45)])
def test_tiled_prediction_equals_full_image(image: np.ndarray, model, tile) -> None:
    f, r = model
    full = f(image)
    for halo in (r, r + 4):
        tiled = predict_tiled(image, f, tile=tile, halo=halo)
        assert tiled.shape == (4, *SHAPE)
        np.testing.assert_array_equal(tiled, full)


def test_too_small_halo_leaves_seams(image: np.ndarray, model) -> None:
    f, r = model
    full = f(image)
    tiled = predict_tiled(image, f, tile=17, halo=r - 1)
    wrong = np.nonzero((tiled != full).any(0))
    assert wrong[0].size > 0
    # ... and only next to interior core edges (multiples of 17), never elsewhere.
    dist_y = np.minimum(wrong[0] % 17, 16 - wrong[0] % 17)
    dist_x = np.minimum(wrong[1] % 17, 16 - wrong[1] % 17)
    assert (np.minimum(dist_y, dist_x) < r).all()


def test_tile_windows_partition_and_clip() -> None:
    tiles = tile_windows(SHAPE, 32, 5)
    assert len(tiles) == 3 * 5
    cover = np.zeros(SHAPE, int)
    for t in tiles:
        cover[t.core.slices] += 1
        r, c = t.window, t.core
        assert r.y0 == max(c.y0 - 5, 0) and r.y1 == min(c.y1 + 5, SHAPE[0])
        assert r.x0 == max(c.x0 - 5, 0) and r.x1 == min(c.x1 + 5, SHAPE[1])
    assert (cover == 1).all()
    last = tiles[-1]
    assert last.core == Window(64, 83, 128, 129) and last.window == Window(59, 83, 123, 129)
    assert last.core_in_window == (slice(5, 24), slice(5, 6))


def test_redundancy() -> None:
    # 2 x 2 tiles of 32 with halo 4: every read window is 36 x 36 (clipped on two sides).
    assert redundancy((64, 64), 32, 4) == pytest.approx(4 * 36 * 36 / (64 * 64))
    assert redundancy(SHAPE, 32, 0) == 1.0
    assert redundancy((100, 100), 100, 8) == 1.0  # one tile: the halo falls outside
    # Large grid: tends to the interior ratio (tile + 2 halo)^2 / tile^2.
    assert redundancy((3200, 3200), 64, 8) == pytest.approx((80 / 64) ** 2, rel=0.01)
    manual = sum(
        (min(y + 32 + 3, 83) - max(y - 3, 0)) * (min(x + 32 + 3, 129) - max(x - 3, 0))
        for y in range(0, 83, 32) for x in range(0, 129, 32)
    ) / (83 * 129)
    assert redundancy(SHAPE, 32, 3) == pytest.approx(manual)


def test_stitch_rejects_missing_duplicate_and_misshaped_tiles() -> None:
    tiles = tile_windows((10, 10), 5, 1)
    preds = [(t, np.ones(t.window.shape)) for t in tiles]
    assert stitch(preds, (10, 10)).sum() == 100
    with pytest.raises(PredictionError, match="uncovered"):
        stitch(preds[:-1], (10, 10))
    with pytest.raises(PredictionError, match="uncovered"):
        stitch([*preds, preds[0]], (10, 10))
    with pytest.raises(PredictionError, match="read window"):
        stitch([(tiles[0], np.ones((5, 5)))], (10, 10))


@pytest.mark.parametrize("tile, halo", [(0, 1), (8, -1), ((8, 8, 8), 1), (True, 1)])
def test_bad_tiling_options(tile, halo) -> None:
    with pytest.raises(ConfigError):
        tile_windows((10, 10), tile, halo)


def test_tile_is_frozen() -> None:
    t = Tile(0, 0, Window(0, 1, 0, 1), Window(0, 1, 0, 1))
    with pytest.raises(AttributeError):
        t.row = 1  # type: ignore[misc]
