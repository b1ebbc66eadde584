"""Train stage end to end: learning on a tiny separable dataset, baselines, CLI, bad inputs."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import with_test_design

from pipeline.errors import ConfigError, GridError, LabelError, TrainingError
from pipeline.inference.loading import load_model, predict_window
from pipeline.raster.zarr_io import write_zarr_atomic
from pipeline.split.design import TEST, TRAIN
from pipeline.split.validation import VAL, validation_region
from pipeline.train import main
from pipeline.training.data import load_training_data
from pipeline.training.options import parse_train_options
from pipeline.training.trainer import split_labels, train_model
from pipeline.training.windows import window_ends

CLASSES = [{"id": 1, "name": "cultivated", "color": "#e6c34a"}, {"id": 2, "name": "forest", "color": "#1b7837"},
           {"id": 4, "name": "water", "color": "#2166ac"}]
FAST = {"classes": CLASSES, "time_steps": 4, "hidden": 8, "patch": 16, "stride": 8, "batch_size": 2,
        "val_fraction": 0.25, "block_size": 16, "buffer": 0, "device": "cpu", "lr": 0.01, "seed": 0}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def make_dataset(n_times: int = 6, channels: int = 3, size: int = 32, seed: int = 0) -> tuple[xr.Dataset, xr.Dataset]:
    """Three classes in 4 px stripes with distinct temporal curves, EPSG:32649 30 m grid.

    The curves are stationary (constant, alternating, constant of the other sign), so a model
    trained on earlier windows must also classify the held-out window of the last date."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    cls = ((yy // 4) + (xx // 4)) % 3
    t = np.arange(n_times)
    patterns = np.stack([np.ones(n_times), (-1.0) ** t, -np.ones(n_times)])
    feats = np.empty((n_times, channels, size, size), np.float32)
    for c in range(channels):
        feats[:, c] = patterns[(cls + c) % 3].transpose(2, 0, 1) * (1 + 0.5 * c)
    feats += rng.normal(0, 0.3, feats.shape)
    labels = np.broadcast_to(np.array([1, 2, 4], np.uint8)[cls], (n_times, size, size)).copy()
    coords = {"time": np.datetime64("2021-01-01", "ns") + np.arange(n_times) * np.timedelta64(16, "D"),
              "y": 4500000 - 15 - 30 * np.arange(size), "x": 500015 + 30 * np.arange(size)}
    attrs = {"crs": "EPSG:32649", "transform": [30.0, 0.0, 500000.0, 0.0, -30.0, 4500000.0]}
    f = xr.Dataset({"features": (("time", "channel", "y", "x"), feats.astype(np.float16)),
                    "valid": (("time", "y", "x"), np.ones((n_times, size, size), bool))},
                   coords={**coords, "channel": np.arange(channels)}, attrs=attrs)
    return f, with_test_design(xr.Dataset({"labels": (("time", "y", "x"), labels)}, coords=coords, attrs=attrs), CLASSES)


def _accuracy_on_last_window(model_dir: Path, f: xr.Dataset, lab: xr.Dataset) -> float:
    model, meta = load_model(model_dir)
    t = meta["time_steps"]
    x = torch.from_numpy(f["features"].values[-t:].astype(np.float32))[None]
    probs = predict_window(model, x)
    assert probs.shape == (1, 3, 32, 32)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 32, 32), atol=1e-4, rtol=0)
    ids = np.array([c["id"] for c in meta["classes"]])
    return float((ids[probs[0].argmax(0).numpy()] == lab["labels"].values[-1]).mean())


def test_stage_end_to_end_semi_convlstm_learns(tmp_path: Path) -> None:
    f, lab = make_dataset()
    fz, lz = write_zarr_atomic(f, tmp_path / "features.zarr"), write_zarr_atomic(lab, tmp_path / "labels.zarr")
    out = tmp_path / "results" / "demo" / "models" / "semi_convlstm"
    opts = {**FAST, "model": "semi_convlstm", "epochs": 8, "rampup_epochs": 3, "consistency_weight": 1.0}
    rc = main(["--features", str(fz), "--labels", str(lz), "--out", str(out), "--options", json.dumps(opts), "--threads", "1"])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"model.pt", "checkpoint.pt", "metrics.csv", "model_card.json", "training_region.tif"}
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))
    assert list(rows[0]) == ["epoch", "train_loss", "sup_loss", "cons_loss", "w", "labelled_share", "val_loss", "val_oa",
                             "val_f1", "lr", "seconds"]
    assert float(rows[0]["w"]) == 0.0 and float(rows[-1]["w"]) == 1.0 and float(rows[-1]["cons_loss"]) > 0
    assert 0.0 < float(rows[-1]["labelled_share"]) <= 1.0
    card = json.loads((out / "model_card.json").read_text())
    assert card["model"] == "semi_convlstm" and card["data"]["features"] == str(fz)
    assert card["options_hash"] == parse_train_options(opts).digest()
    assert card["metrics"]["val_oa"] >= 0.95, card["metrics"]
    assert card["best_epoch"] == int(max(rows, key=lambda r: float(r["val_f1"]))["epoch"])  # monitor: val_f1 (first best)
    assert _accuracy_on_last_window(out, f, lab) >= 0.95


def test_consistency_weight_is_scaled_by_the_labelled_share(tmp_path: Path) -> None:
    """consistency_scaling 'labelled_share' (the Pi-model's w_max * M/N) trains exactly as
    'none' with w_max multiplied by the share that metrics.csv reports, and differently from
    the unscaled weight: with 10 % of the pixels labelled the scaling matters."""
    f, lab = make_dataset()
    sparse = lab["labels"].values.copy()
    sparse[np.random.default_rng(1).random(sparse.shape) >= 0.1] = 0  # 10 % of the pixels labelled
    lab = lab.assign(labels=(lab["labels"].dims, sparse))
    base = {**FAST, "model": "semi_convlstm", "epochs": 3, "rampup_epochs": 2, "consistency_weight": 4.0}

    def curve(name: str, **opts: object) -> list[dict[str, float]]:
        train_model(f, lab, tmp_path / name, {**base, **opts})
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader((tmp_path / name / "metrics.csv").open())]

    scaled = curve("scaled")
    shares = {r["labelled_share"] for r in scaled}
    assert len(shares) == 1  # every window in every epoch (no max_windows_per_epoch): one share
    share = shares.pop()
    assert 0.05 < share < 0.2
    assert [r["w"] for r in scaled] == [0.0, pytest.approx(4.0 * np.exp(-5 * 0.25)), 4.0]  # w(e), before scaling
    by_hand = curve("by_hand", consistency_scaling="none", consistency_weight=4.0 * share)
    np.testing.assert_allclose([r["train_loss"] for r in by_hand], [r["train_loss"] for r in scaled], rtol=1e-4)
    unscaled = curve("unscaled", consistency_scaling="none")
    assert abs(unscaled[-1]["train_loss"] - scaled[-1]["train_loss"]) > 1e-3


def test_supervised_convlstm_and_pixel_lstm_learn(tmp_path: Path) -> None:
    f, lab = make_dataset()
    res = train_model(f, lab, tmp_path / "convlstm", {**FAST, "model": "convlstm", "epochs": 6})
    assert res.metrics["w"] == 0.0 and res.metrics["cons_loss"] == 0.0
    assert res.metrics["val_oa"] >= 0.95
    res = train_model(f, lab, tmp_path / "pixel", {**FAST, "model": "pixel_lstm", "epochs": 3, "lstm_hidden": 16,
                                                   "pixel_batch_size": 256})
    assert res.metrics["val_oa"] >= 0.9
    assert _accuracy_on_last_window(tmp_path / "pixel", f, lab) >= 0.9


@pytest.mark.parametrize(("model", "space"), [("rf", {"n_estimators": [10, 20], "max_depth": [5, None]}),
                                              ("svm", {"C": [1, 10], "gamma": ["auto", 0.1]})])
def test_sklearn_baselines_run(tmp_path: Path, model: str, space: dict[str, list[object]]) -> None:
    f, lab = make_dataset()
    opts = {**FAST, "model": model, "n_iter": 2, "max_pixels_per_class": 150, "search_space": space}
    res = train_model(f, lab, tmp_path / model, opts, threads=1)
    assert res.metrics["val_oa"] >= 0.9 and res.metrics["n_train"] <= 450
    assert {p.name for p in (tmp_path / model).iterdir()} == {"model.joblib", "model.json", "metrics.csv", "model_card.json",
                                                         "training_region.tif"}
    assert _accuracy_on_last_window(tmp_path / model, f, lab) >= 0.9
    with pytest.raises(ConfigError, match="n_trees"):
        train_model(f, lab, tmp_path / "bad", {**opts, "search_space": {"n_trees": [1]}})


@pytest.mark.parametrize(("options", "needle"), [
    ({"epochz": 3}, "epochz"),
    ({"model": "cnn"}, "'model'"),
    ({"focal_gamma": -1}, "focal_gamma"),
    ({"model": "convlstm", "consistency_weight": 5.0}, "consistency_weight"),
    ({"kernel": 4}, "kernel"),
    ("not json", "JSON"),
])
def test_bad_options_exit_2(tmp_path: Path, caplog: pytest.LogCaptureFixture, options: object, needle: str) -> None:
    f, lab = make_dataset(size=16)
    fz, lz = write_zarr_atomic(f, tmp_path / "f.zarr"), write_zarr_atomic(lab, tmp_path / "l.zarr")
    text = options if isinstance(options, str) else json.dumps({"classes": CLASSES, **options})
    with caplog.at_level(logging.ERROR):
        rc = main(["--features", str(fz), "--labels", str(lz), "--out", str(tmp_path / "m"), "--options", text])
    assert rc == 2
    assert needle in caplog.text
    assert not (tmp_path / "m").exists()


def test_option_defaults_are_cpu_settings_and_the_paper_gpu_profile_the_paper() -> None:
    import yaml

    o = parse_train_options({"classes": CLASSES})
    assert (o.model, o.time_steps, o.hidden, o.lstm_hidden, o.kernel, o.patch, o.stride, o.lr, o.pixel_batch_size,
            o.epochs, o.max_windows_per_epoch) == ("semi_convlstm", 12, 16, 256, 3, 64, 32, 1e-3, 1024, 20, 64)
    from pipeline.config import check_config
    from pipeline.plan.config_moves import flat_section

    def merged(base: dict, extra: dict) -> dict:  # nested blocks key by key, as Snakemake merges configfiles
        return {**base, **{k: merged(base.get(k) or {}, v) if isinstance(v, dict) else v for k, v in extra.items()}}

    repo = Path(__file__).resolve().parents[1]
    profile = yaml.safe_load((repo / "workflow" / "profiles" / "paper-gpu" / "paper.yaml").read_text())
    config = check_config(merged(yaml.safe_load((repo / "config.yaml").read_text()), profile))
    paper = parse_train_options({**flat_section(config, "train"), "classes": CLASSES})
    assert (paper.time_steps, paper.hidden, paper.patch, paper.stride, paper.lr, paper.max_windows_per_epoch) == (
        20, 128, 128, 64, 1e-3, None)  # section 4.1 of the paper
    assert o.w_max > 0 and parse_train_options({"classes": CLASSES, "model": "convlstm"}).w_max == 0.0
    assert o.digest() == parse_train_options(json.dumps({"classes": CLASSES})).digest()
    assert o.digest() != parse_train_options({"classes": CLASSES, "seed": 1}).digest()
    with pytest.raises(ConfigError, match="classes"):
        parse_train_options({})


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    f, lab = make_dataset(size=32)
    with pytest.raises(TrainingError, match="time_steps=9"):
        train_model(f, lab, tmp_path / "a", {**FAST, "time_steps": 9, "epochs": 1})
    empty = lab.copy(deep=True)
    empty["labels"][:] = 0
    with pytest.raises(TrainingError, match="no labelled pixel in the training region"):
        train_model(f, empty, tmp_path / "b", {**FAST, "epochs": 1})
    unknown = lab.copy(deep=True)
    unknown["labels"][2, :3, :3] = 9
    with pytest.raises(LabelError, match=r"9 \(9 px\)"):
        train_model(f, unknown, tmp_path / "c", {**FAST, "epochs": 1})
    shifted = lab.assign_attrs(transform=[30.0, 0.0, 500030.0, 0.0, -30.0, 4500000.0])
    with pytest.raises(GridError, match="transform"):
        train_model(f, shifted, tmp_path / "d", {**FAST, "epochs": 1})
    small = lab.isel(x=slice(0, 16))
    with pytest.raises(GridError, match="x size 32 vs 16"):
        train_model(f, small, tmp_path / "e", {**FAST, "epochs": 1})
    other_crs = lab.assign_attrs(crs="EPSG:32650")
    with pytest.raises(GridError, match="CRS"):
        train_model(f, other_crs, tmp_path / "g", {**FAST, "epochs": 1})


def test_nan_features_are_masked_and_losses_stay_finite(tmp_path: Path) -> None:
    f, lab = make_dataset()
    feats = f["features"].values.copy()
    feats[:, 1, 0:8, 0:8] = np.nan  # one channel missing -> whole pixel-date unusable
    feats[5, :, 20:24, 20:24] = np.nan  # last date, labelled pixels
    feats[3, 0, 10, 10] = np.inf
    f["features"] = (("time", "channel", "y", "x"), feats)
    opts = parse_train_options({**FAST, "model": "semi_convlstm", "epochs": 2, "rampup_epochs": 1, "consistency_weight": 1.0})
    data = load_training_data(f, lab, classes=opts.classes)
    assert not data.usable[:, 0:8, 0:8].any() and not data.usable[3, 10, 10] and data.usable[3, 10, 11]
    assert (data.labels[5, 20:24, 20:24] == -1).all() and (data.labels[5, 24:, 24:] >= 0).all()
    assert np.isnan(data.features[3, :, 10, 10]).all()
    # Cloudy (valid == False) pixels keep their features and labels unless use_valid_mask is set.
    f["valid"][4, 0, 20] = False
    assert load_training_data(f, lab, classes=opts.classes).usable[4, 0, 20]
    masked = load_training_data(f, lab, classes=opts.classes, use_valid_mask=True)
    assert not masked.usable[4, 0, 20] and masked.labels[4, 0, 20] == -1 and masked.usable[4, 0, 21]
    res = train_model(f, lab, tmp_path / "m", opts)
    for key in ("train_loss", "sup_loss", "cons_loss", "val_loss", "val_oa"):
        assert np.isfinite(res.metrics[key]), key
    assert res.metrics["cons_loss"] > 0


def test_label_fraction_keeps_latest_dates_in_the_training_split() -> None:
    f, lab = make_dataset(n_times=8)
    opts = parse_train_options({**FAST, "label_fraction": 0.5, "label_removal": "chronological"})
    data = load_training_data(f, lab, classes=opts.classes)
    ends = window_ends(8, 4)
    design = np.zeros((32, 32), np.uint8)
    design[:8, :8] = TEST
    region = validation_region(design, data.labels[ends], block=8, share=0.25, buffer=0, seed=0)
    assert (region == VAL).any() and (region == TRAIN).any()
    train, val = split_labels(data, region, ends, opts)
    has = (train >= 0).any(axis=(1, 2))
    assert has.tolist() == [False] * 4 + [True] * 4  # floor(0.5 * 8) latest dates kept
    assert (val >= 0).any(axis=(1, 2)).all()  # validation keeps every labelled date
    assert not ((train >= 0) & (val >= 0)).any()
    assert ((val >= 0) == (region == VAL)[None]).all()
    assert not (train[:, :8, :8] >= 0).any() and not (val[:, :8, :8] >= 0).any()  # test pixels: never


def test_last_date_is_held_out_for_testing(tmp_path: Path) -> None:
    """With holdout_last_date (default) no training window ends at the last (map) date: a window
    as long as the series is impossible, and becomes possible when the holdout is switched off."""
    f, lab = make_dataset(n_times=4)
    with pytest.raises(TrainingError, match="hold 4 dates but time_steps=4 needs at least 5"):
        train_model(f, lab, tmp_path / "a", {**FAST, "time_steps": 4, "epochs": 1})
    result = train_model(f, lab, tmp_path / "b", {**FAST, "time_steps": 4, "epochs": 1, "holdout_last_date": False})
    assert result.completed


def test_train_classes_are_the_class_table() -> None:
    """The train option ``classes`` is the class table (ids 1..254) and serialises as the config list."""
    from pipeline.reference.classes import LandCoverClass

    opts = parse_train_options({"classes": CLASSES})
    assert all(isinstance(c, LandCoverClass) for c in opts.classes)
    assert opts.to_dict()["classes"] == CLASSES
    for bad, needle in ((255, r"1\.\.254: 255 is the nodata value"), (0, r"1\.\.254")):
        with pytest.raises(ConfigError, match=needle):
            parse_train_options({"classes": [{"id": bad, "name": "a", "color": "#000000"}]})
