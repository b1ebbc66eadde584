"""The spatial test design: blocks, stratified draws, buffers, CV folds, and what training and
evaluation make of them (held-out locations never trained on; memorisation shows under paper)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import with_test_design

from pipeline import evaluate as evaluate_stage
from pipeline.errors import ConfigError, LabelError, TrainingError
from pipeline.predict import PredictOptions, run_predict
from pipeline.raster.zarr_io import write_zarr_atomic
from pipeline.split.blocks import assign_folds, block_class_counts, block_index, draw_blocks, n_blocks, near
from pipeline.split.design import BUFFER, TEST, TRAIN, DesignOptions, build_design, fold_region
from pipeline.split.validation import VAL, validation_region
from pipeline.training.trainer import train_model

CLASSES = [{"id": 1, "name": "crop", "color": "#e6c34a"}, {"id": 2, "name": "forest", "color": "#1b7837"},
           {"id": 3, "name": "water", "color": "#2166ac"}]
T = [30.0, 0.0, 500000.0, 0.0, -30.0, 4500000.0]


def chebyshev_gap(a: np.ndarray, b: np.ndarray) -> int:
    """Smallest Chebyshev distance between a True pixel of ``a`` and one of ``b`` (brute force)."""
    ya, xa = np.nonzero(a)
    yb, xb = np.nonzero(b)
    return int(np.maximum(np.abs(ya[:, None] - yb[None, :]), np.abs(xa[:, None] - xb[None, :])).min())


def parcels(shape: tuple[int, int], size: int, seed: int, p: tuple[float, ...] = (0.6, 0.3, 0.1)) -> np.ndarray:
    """(H, W) class indices 0..2 constant over square parcels of ``size`` px, drawn with ``p``."""
    rng = np.random.default_rng(seed)
    grid = rng.choice(len(p), size=(-(-shape[0] // size), -(-shape[1] // size)), p=p)
    return np.kron(grid, np.ones((size, size), int))[: shape[0], : shape[1]]


def test_near_is_the_chebyshev_ring() -> None:
    mask = np.zeros((15, 15), bool)
    mask[6:8, 5:9] = True
    ring = near(mask, 2)
    yy, xx = np.mgrid[:15, :15]
    ys, xs = np.nonzero(mask)
    dist = np.maximum(np.abs(yy[..., None] - ys), np.abs(xx[..., None] - xs)).min(-1)
    assert np.array_equal(ring, (dist > 0) & (dist <= 2))
    assert not near(mask, 0).any()


def test_folds_cover_every_labelled_block_exactly_once() -> None:
    labels = parcels((60, 70), 5, seed=1)[None]
    labels[:, :, 60:] = -1  # the last column of blocks holds no label
    blocks = block_index(labels.shape[1:], 10)
    counts = block_class_counts(labels, blocks, 3, n_blocks(labels.shape[1:], 10))
    fold = assign_folds(counts, 4, seed=0)
    labelled = counts.sum(1) > 0
    assert (fold[labelled] >= 0).all() and (fold[~labelled] == -1).all()
    sizes = np.bincount(fold[labelled], minlength=4)
    assert sizes.sum() == labelled.sum() and sizes.max() - sizes.min() <= 1
    # the fold regions of the stored per-pixel folds partition the labelled blocks: each is a test set once
    per_pixel = fold[blocks]
    tested = sum((fold_region(per_pixel, k, 2) == TEST).astype(int) for k in range(4))
    assert np.array_equal(tested, (per_pixel >= 0).astype(int))
    # stratified: every class is in every fold
    for k in range(4):
        assert (counts[fold == k].sum(0) > 0).all()


@pytest.mark.parametrize("seed", range(5))
def test_draw_keeps_every_class_in_training_and_in_the_test_set(seed: int) -> None:
    labels = parcels((64, 64), 4, seed=seed, p=(0.85, 0.13, 0.02))[None]
    blocks = block_index(labels.shape[1:], 16)
    counts = block_class_counts(labels, blocks, 3, 16)
    chosen = draw_blocks(counts, 0.3, seed=seed)
    assert chosen.size == 5  # round(0.3 * 16)
    test, total = counts[chosen].sum(0), counts.sum(0)
    assert (test < total).all()  # every class keeps training pixels
    spread = (counts > 0).sum(0) >= 2
    assert (test[spread] > 0).all()  # and is tested wherever it occurs in two blocks or more


def test_design_separates_train_and_test_by_the_buffer() -> None:
    cls = parcels((48, 48), 4, seed=3)
    labels = np.broadcast_to(cls, (3, 48, 48)).copy()
    opts = DesignOptions.from_mapping({"block_size": 12, "test_share": 0.3, "buffer": 3, "seed": 1, "folds": 3})
    d = build_design(labels, ["crop", "forest", "water"], opts)
    train, test, buf = d.region == TRAIN, d.region == TEST, d.region == BUFFER
    assert test.any() and buf.any() and train.any()
    assert chebyshev_gap(train, test) == 4  # buffer 3: the closest training pixel is 4 px away
    assert np.array_equal(buf, near(test, 3))
    rec = d.record
    assert rec["kind"] == "spatial_blocks" and rec["test_blocks"] == round(0.3 * 16) and rec["buffer_px"] == 3
    assert rec["test_pixels"] == int(test.sum()) and rec["labelled_pixels"] == 48 * 48
    assert sum(v["test"] for v in rec["class_pixels"].values()) == rec["test_pixels"]
    # the paper design holds nothing out
    paper = build_design(labels, ["crop", "forest", "water"], DesignOptions(design="paper"))
    assert (paper.region == TRAIN).all() and paper.record["test_blocks"] == 0


def test_automatic_buffer_is_the_receptive_field_capped_at_a_quarter_block() -> None:
    labels = parcels((40, 40), 4, seed=0)[None]
    capped = build_design(labels, ["a", "b", "c"], DesignOptions(block_size=8, receptive_field=50))
    assert capped.record["buffer_px"] == 2  # a quarter of the block
    small = build_design(labels, ["a", "b", "c"], DesignOptions(block_size=16, receptive_field=3))
    assert small.record["buffer_px"] == 3
    default = build_design(labels, ["a", "b", "c"], DesignOptions(patch=64))
    assert default.record["block_size"] == 10  # a quarter of the 40 px grid, below the 64 px patch


def test_design_errors_name_the_fix() -> None:
    one_block = np.zeros((1, 20, 20), int)
    with pytest.raises(LabelError, match="evaluation.design: paper"):
        build_design(one_block, ["a"], DesignOptions(block_size=32))
    with pytest.raises(ConfigError, match="test_share"):
        DesignOptions.from_mapping({"test_share": 1.5})
    with pytest.raises(ConfigError, match="unknown config key .evaluation.blocksize.; did you mean .block_size."):
        DesignOptions.from_mapping({"blocksize": 3})
    with pytest.raises(LabelError, match="fold 4 holds no block"):
        fold_region(np.zeros((4, 4), int), 4, 1)


def test_validation_is_small_stratified_and_inside_the_training_region() -> None:
    cls = parcels((64, 64), 4, seed=5, p=(0.7, 0.25, 0.05))
    labels = np.broadcast_to(cls, (4, 64, 64)).copy()
    d = build_design(labels, ["a", "b", "c"], DesignOptions(block_size=8, test_share=0.3, buffer=2, seed=2))
    run = validation_region(d.region, labels, block=8, share=0.15, buffer=1, seed=0)
    assert (run[d.region == TEST] == TEST).all()  # the test blocks are untouched
    val = run == VAL
    assert val.any() and not (val & (d.region != TRAIN)).any()
    assert chebyshev_gap(run == TRAIN, val) == 2
    for k in range(3):  # every class keeps most of its training pixels
        in_train = (d.region == TRAIN) & (cls == k)
        assert ((run == TRAIN) & (cls == k)).sum() >= 0.6 * in_train.sum()
    assert val.sum() <= 0.25 * (d.region == TRAIN).sum()


def fingerprint_world(tmp: Path, seed: int = 0) -> tuple[xr.Dataset, xr.Dataset]:
    """Features that identify a location but say nothing of its class (a random vector per pixel,
    the same at every date) and static labels of random 4 px parcels: a model can only memorise."""
    rng = np.random.default_rng(seed)
    n, size = 6, 48
    cls = parcels((size, size), 4, seed=seed, p=(0.4, 0.35, 0.25))
    feats = np.broadcast_to(rng.normal(size=(1, 4, size, size)), (n, 4, size, size)).astype(np.float16)
    coords = {"time": np.datetime64("2021-01-01", "ns") + np.arange(n) * np.timedelta64(16, "D"),
              "y": 4500000 - 15 - 30 * np.arange(size), "x": 500015 + 30 * np.arange(size)}
    attrs = {"crs": "EPSG:32649", "transform": T}
    f = xr.Dataset({"features": (("time", "channel", "y", "x"), feats),
                    "valid": (("time", "y", "x"), np.ones((n, size, size), bool))},
                   coords={**coords, "channel": np.arange(4)}, attrs=attrs)
    labels = np.broadcast_to((cls + 1).astype(np.uint8), (n, size, size)).copy()
    return f, xr.Dataset({"labels": (("time", "y", "x"), labels)}, coords=coords, attrs=attrs)


def _oa(tmp: Path, name: str, f: xr.Dataset, lab: xr.Dataset) -> dict:
    lz = write_zarr_atomic(lab, tmp / f"{name}.zarr")
    n = f.sizes["time"]
    cube = f[["valid"]].assign(valid_fraction=("time", np.ones(n, np.float32))).assign_coords(
        item_ids=("time", [f"item{i}" for i in range(n)]))
    cz = write_zarr_atomic(cube, tmp / f"{name}-cube.zarr")
    model = tmp / name / "rf"
    train_model(f, lab, model, {"classes": CLASSES, "model": "rf", "time_steps": 2, "n_iter": 1, "cv_folds": 2,
                                "val_fraction": 0.0, "max_pixels_per_class": 20000, "seed": 0,
                                "search_space": {"n_estimators": [60], "max_features": ["sqrt"]}}, threads=1)
    run_predict(write_zarr_atomic(f, tmp / f"{name}-f.zarr"), model, tmp / name / "map",
                PredictOptions.from_options({"tile": 64}), name="t")
    out = tmp / name / "report"
    assert evaluate_stage.main(["--map", str(tmp / name / "map" / "classes.tif"), "--cube", str(cz), "--labels",
                                str(lz), "--classes", json.dumps(CLASSES), "--options", '{"sample_reference": "none"}',
                                "--out", str(out)]) == 0
    return json.loads((out / "accuracy.json").read_text())


def test_paper_design_rewards_memorising_locations_the_spatial_design_does_not(tmp_path: Path) -> None:
    """A random forest fed location fingerprints memorises the training locations: scored on them
    (the paper's design: the map date's pixels were labelled at the other dates) it looks
    excellent; scored on held-out blocks it is at chance level."""
    f, lab = fingerprint_world(tmp_path)
    paper = _oa(tmp_path, "paper", f, with_test_design(lab, CLASSES, design="paper"))
    spatial = _oa(tmp_path, "spatial", f, with_test_design(lab, CLASSES, design="spatial_blocks", block_size=12,
                                                         buffer=2, seed=1))
    assert paper["design"]["kind"] == "paper" and spatial["design"]["kind"] == "spatial_blocks"
    assert paper["overall_accuracy"] > 0.75  # measured 0.81: the training locations, recognised
    assert spatial["overall_accuracy"] < 0.5  # measured 0.35: chance (the largest class holds ~40 %)
    assert paper["overall_accuracy"] - spatial["overall_accuracy"] > 0.3
    assert spatial["evaluated_pixels"] < paper["evaluated_pixels"]


def test_training_never_touches_test_or_buffer_pixels(tmp_path: Path) -> None:
    """Read back from the stored masks (labels.zarr split, training_region.tif) and the card:
    train / validation / test are disjoint and training pixels keep the buffer from the test."""
    f, lab = fingerprint_world(tmp_path, seed=2)
    lab = with_test_design(lab, CLASSES, design="spatial_blocks", block_size=12, buffer=3, seed=4)
    out = tmp_path / "convlstm"
    train_model(f, lab, out, {"classes": CLASSES, "model": "convlstm", "time_steps": 2, "hidden": 4, "patch": 16,
                              "stride": 8, "epochs": 1, "batch_size": 4, "val_fraction": 0.15, "buffer": 1,
                              "device": "cpu"}, threads=1)
    with rasterio.open(out / "training_region.tif") as src:
        run = src.read(1)
        assert src.tags(1)["code_3"] == "validation"
    design = lab["split"].values
    assert np.array_equal(run == TEST, design == TEST)
    assert chebyshev_gap(run == TRAIN, run == TEST) > 3
    assert chebyshev_gap(run == TRAIN, run == VAL) > 1 and (run == VAL).any()
    card = json.loads((out / "model_card.json").read_text())
    assert card["design"]["kind"] == "spatial_blocks" and card["design"]["buffer_px"] == 3
    cls = lab["labels"].values[0]
    for k, c in enumerate(CLASSES):
        counts = card["split_counts"][c["name"]]
        assert counts["train"] > 0
        # pixel-dates at the window ends (4 of the 6 dates minus the held-out last one: ends 1..4)
        assert counts["test"] == 4 * int(((run == TEST) & (cls == k + 1)).sum())


def test_a_class_left_without_training_pixels_stops_training(tmp_path: Path) -> None:
    f, lab = fingerprint_world(tmp_path, seed=3)
    lab = with_test_design(lab, CLASSES, design="spatial_blocks", block_size=12, buffer=0, seed=0)
    labels = lab["labels"].values.copy()
    labels[labels == 3] = 1
    test = lab["split"].values == TEST
    labels[:, test] = np.where(labels[:, test] == 2, 3, labels[:, test])  # water only inside test blocks
    lab = lab.assign(labels=(("time", "y", "x"), labels))
    with pytest.raises(TrainingError, match=r"\['water'\] have labels but no training pixel"):
        train_model(f, lab, tmp_path / "m", {"classes": CLASSES, "model": "rf", "time_steps": 2, "n_iter": 1,
                                             "cv_folds": 2, "val_fraction": 0.0})
