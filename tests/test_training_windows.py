"""Sliding windows, patch origins, training / validation patches of a run region and batch gathering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.errors import TrainingError
from pipeline.training.batches import WindowSource
from pipeline.split.design import TEST, TRAIN
from pipeline.split.validation import VAL
from pipeline.training.windows import (
    axis_origins,
    patch_origins,
    patch_windows,
    pixel_windows,
    plan_patches,
    select_label_dates,
    window_ends,
)


def test_window_ends_and_too_long_window() -> None:
    assert window_ends(6, 4).tolist() == [3, 4, 5]
    assert window_ends(4, 4).tolist() == [3]
    with pytest.raises(TrainingError, match=r"time_steps=7.*6 dates"):
        window_ends(6, 7)


def test_patch_origins_cover_the_grid() -> None:
    assert axis_origins(10, 4, 3) == [0, 3, 6]
    assert axis_origins(11, 4, 3) == [0, 3, 6, 7]
    assert axis_origins(3, 4, 3) == []
    assert axis_origins(20, 4, 4, start=8, stop=14) == [8, 10]
    o = patch_origins(11, 10, patch=(4, 4), stride=3)
    covered = np.zeros((11, 10), bool)
    for y, x in o:
        covered[y : y + 4, x : x + 4] = True
    assert covered.all()
    assert len(o) == 4 * 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_patches_cover_the_grid_and_score_each_validation_pixel_once(seed: int) -> None:
    """Training patches cover the whole grid (held-out pixels are masked, not avoided); the
    validation patches tile the grid where validation pixels are and score each exactly once."""
    h, w = 48, 40
    rng = np.random.default_rng(seed)
    region = np.full((h, w), TRAIN, np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, h - 10), rng.integers(0, w - 10)
        region[y : y + 10, x : x + 10] = VAL
    region[:5, :5] = TEST
    s = plan_patches(region, patch=8, stride=4)
    assert s.patch == (8, 8) and np.array_equal(s.region, region)
    covered = np.zeros((h, w), bool)
    for y, x in s.train_origins:
        covered[y : y + 8, x : x + 8] = True
    assert covered.all() and len(s.train_origins) == len(patch_origins(h, w, patch=(8, 8), stride=4))
    count = np.zeros((h, w), int)
    for (y, x), own in zip(s.val_origins, s.val_owned, strict=True):
        assert (region[y : y + 8, x : x + 8] == VAL).any()
        count[y : y + 8, x : x + 8] += own
    assert (count[region == VAL] == 1).all() and count.max() == 1
    clamped = plan_patches(np.zeros((6, 30), np.uint8), patch=8, stride=4)
    assert clamped.patch == (6, 8) and len(clamped.val_origins) == 0


def test_patch_and_pixel_windows_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    keep = rng.random((5, 12, 12)) < 0.02
    origins = patch_origins(12, 12, patch=(4, 4), stride=4)
    ends = np.array([2, 3, 4])
    got = patch_windows(origins, ends, keep, patch=(4, 4))
    want = [(e, y, x, m) for e in ends for m, (y, x) in enumerate(origins) if keep[e, y : y + 4, x : x + 4].any()]
    assert [tuple(r) for r in got.tolist()] == want
    px = pixel_windows(ends, keep)
    assert sorted(map(tuple, px.tolist())) == sorted((e, y, x) for e in ends for y, x in zip(*np.nonzero(keep[e]), strict=True))


def test_select_label_dates() -> None:
    dates = np.array([9, 2, 5, 7])
    assert select_label_dates(dates, fraction=1.0, mode="chronological", seed=0).tolist() == [2, 5, 7, 9]
    assert select_label_dates(dates, fraction=0.5, mode="chronological", seed=0).tolist() == [7, 9]
    assert select_label_dates(dates, fraction=0.1, mode="chronological", seed=0).tolist() == [9]
    r = select_label_dates(dates, fraction=0.5, mode="random", seed=3)
    assert len(r) == 2 and set(r) <= {2, 5, 7, 9}
    assert r.tolist() == select_label_dates(dates, fraction=0.5, mode="random", seed=3).tolist()
    picks = {tuple(select_label_dates(dates, fraction=0.5, mode="random", seed=s)) for s in range(20)}
    assert len(picks) > 1


def test_window_source_gathers_the_right_values() -> None:
    t_, c, h, w = 6, 2, 8, 8
    feats = torch.arange(t_ * c * h * w, dtype=torch.float32).reshape(t_, c, h, w).half()
    labels = torch.arange(t_ * h * w).reshape(t_, h, w).remainder(3).to(torch.int16)
    usable = torch.ones(t_, h, w, dtype=torch.bool)
    usable[4, 1, 2] = False
    windows = np.array([[3, 0, 0, 0], [5, 4, 2, 1]])
    owned = torch.ones(2, 4, 4, dtype=torch.bool)
    owned[1, 0, 0] = False
    src = WindowSource(feats, labels, usable, windows, time_steps=3, patch=(4, 4), owned=owned)
    b = src.batch(torch.tensor([1, 0]))
    assert b.x.dtype == torch.float32 and b.x.shape == (2, 3, 2, 4, 4)
    assert torch.equal(b.x[0], feats[3:6, :, 4:8, 2:6].float())
    assert torch.equal(b.x[1], feats[1:4, :, 0:4, 0:4].float())
    assert b.target[0, 0, 0].item() == -1 and not b.usable[0, 0, 0]  # not owned
    assert b.target[0, 1, 1].item() == labels[5, 5, 3].item()
    pix = WindowSource(feats, labels, usable, np.array([[4, 1, 2], [2, 7, 0]]), time_steps=3, patch=None)
    pb = pix.batch(torch.tensor([0, 1]))
    assert torch.equal(pb.x[0], feats[2:5, :, 1, 2].float())
    assert torch.equal(pb.x[1], feats[0:3, :, 7, 0].float())
    assert pb.target.tolist() == [labels[4, 1, 2].item(), labels[2, 7, 0].item()]
    assert pb.usable.tolist() == [False, True]


def test_epoch_order_draws_the_same_labelled_budget_whatever_the_unlabelled_share() -> None:
    """The cap counts labelled windows; unlabelled ones come on top at the configured ratio, so a
    semi-supervised source (mostly unlabelled windows) gets as many labelled windows as a
    supervised one - the cap used to be filled at random, starving it of labels."""
    from pipeline.training.batches import epoch_order

    labelled = torch.zeros(400, dtype=torch.bool)
    labelled[::14] = True  # 29 labelled windows, ~7 % as at 10 % labels on the demo
    gen = torch.Generator().manual_seed(0)
    order = epoch_order(labelled, budget=20, unlabelled_ratio=1.5, generator=gen)
    assert order.unique().numel() == order.numel() == 20 + 30
    assert int(labelled[order].sum()) == 20
    # fewer labelled windows than the budget: all of them, and ratio x as many unlabelled
    order = epoch_order(labelled, budget=48, unlabelled_ratio=1.0, generator=gen)
    assert int(labelled[order].sum()) == 29 and order.numel() == 58
    # shuffled: the labelled ones are not all first
    assert not bool(labelled[order[:29]].all())
    # ratio 0: labelled windows only
    assert bool(labelled[epoch_order(labelled, budget=10, unlabelled_ratio=0.0, generator=gen)].all())
    # no budget: every window once
    assert sorted(epoch_order(labelled, budget=None, unlabelled_ratio=1.0, generator=gen).tolist()) == list(range(400))


def test_epoch_order_of_a_labelled_only_source_is_the_plain_shuffle() -> None:
    """Supervised sources keep their order (and so their trained weights) exactly."""
    from pipeline.training.batches import epoch_order

    labelled = torch.ones(100, dtype=torch.bool)
    got = epoch_order(labelled, budget=30, unlabelled_ratio=1.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(got, torch.randperm(100, generator=torch.Generator().manual_seed(5))[:30])


def test_pixel_models_get_the_pixels_of_the_patch_budget() -> None:
    """max_windows_per_epoch counts patches; a pixel source gets patch**2 pixels per patch, not
    max_windows pixels (which trained the pixel LSTM on a few hundred pixels in all)."""
    from pipeline.training.loop import window_budget
    from pipeline.training.options import parse_train_options

    classes = [{"id": 1, "name": "a", "color": "#000000"}]
    opts = parse_train_options({"model": "pixel_lstm", "patch": 8, "max_windows_per_epoch": 3, "classes": classes})
    feats = torch.zeros(4, 2, 8, 8, dtype=torch.float16)
    pixel_src = WindowSource(feats, torch.zeros(4, 8, 8, dtype=torch.int16), torch.ones(4, 8, 8, dtype=torch.bool),
                             np.zeros((5, 3), dtype=np.int64), time_steps=2, patch=None)
    patch_src = WindowSource(feats, torch.zeros(4, 8, 8, dtype=torch.int16), torch.ones(4, 8, 8, dtype=torch.bool),
                             np.zeros((5, 4), dtype=np.int64), time_steps=2, patch=(8, 8))
    assert window_budget(opts, pixel_src) == 3 * 64
    assert window_budget(opts, patch_src) == 3


def test_pixel_counts_and_labelled_share_match_brute_force() -> None:
    """The counts behind the Pi-model's weight scaling (labelled / usable pixels of the windows
    an epoch draws) equal a numpy count over what each window's batch holds."""
    from pipeline.training.loop import labelled_share

    rng = np.random.default_rng(3)
    t_, h, w = 5, 12, 12
    feats = torch.zeros(t_, 1, h, w, dtype=torch.float16)
    labels_np = np.where(rng.random((t_, h, w)) < 0.1, rng.integers(0, 3, (t_, h, w)), -1).astype(np.int16)
    usable_np = rng.random((t_, h, w)) < 0.8
    windows = np.array([[2, 0, 0, 0], [3, 4, 4, 1], [4, 6, 2, 0], [4, 8, 8, 1]])
    owned_np = rng.random((2, 4, 4)) < 0.7
    src = WindowSource(feats, torch.from_numpy(labels_np), torch.from_numpy(usable_np), windows, time_steps=2,
                       patch=(4, 4), owned=torch.from_numpy(owned_np))
    expected = []
    for e, y, x, o in windows:
        own = owned_np[o]
        expected.append([int(((labels_np[e, y:y + 4, x:x + 4] >= 0) & own).sum()),
                         int((usable_np[e, y:y + 4, x:x + 4] & own).sum())])
    assert src.pixel_counts().tolist() == expected
    b = src.batch(torch.arange(4))  # the counts are those of the batches the loop trains on
    assert [[int((b.target[i] >= 0).sum()), int(b.usable[i].sum())] for i in range(4)] == expected
    order = torch.tensor([1, 3, 3, 0])  # a window drawn twice counts twice
    exp = np.array(expected)[[1, 3, 3, 0]].sum(0)
    assert labelled_share(src, order) == pytest.approx(exp[0] / exp[1], rel=1e-12)
    assert labelled_share(src, torch.zeros(0, dtype=torch.int64)) == 0.0

    pix_windows = np.array([[1, 0, 0], [2, 5, 7], [4, 11, 11]])
    pix = WindowSource(feats, torch.from_numpy(labels_np), torch.from_numpy(usable_np), pix_windows, time_steps=2,
                       patch=None)
    assert pix.pixel_counts().tolist() == [[int(labels_np[e, y, x] >= 0), int(usable_np[e, y, x])]
                                           for e, y, x in pix_windows]
