"""Checkpoints: digest, corruption detection, RNG capture, and resume determinism."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import with_test_design

from pipeline.errors import CheckpointError
from pipeline.inference.loading import load_model
from pipeline.models.files import content_digest, load_checkpoint
from pipeline.training.checkpoint import (
    capture_rng_state,
    restore_rng_state,
    save_checkpoint,
)
from pipeline.training.trainer import train_model

CLASSES = [{"id": 1, "name": "cultivated", "color": "#e6c34a"}, {"id": 2, "name": "forest", "color": "#1b7837"},
           {"id": 4, "name": "water", "color": "#2166ac"}]


def make_dataset(n_times: int = 6, channels: int = 3, size: int = 32, seed: int = 0) -> tuple[xr.Dataset, xr.Dataset]:
    """Three classes in 4 px stripes with distinct temporal curves, EPSG:32649 30 m grid."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    cls = ((yy // 4) + (xx // 4)) % 3
    t = np.arange(n_times)
    patterns = np.stack([np.sin(t), np.cos(t), t / n_times - 0.5])
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


def _payload() -> dict[str, object]:
    return {"model_state": {"w": torch.randn(3, 4), "b": torch.zeros(4, dtype=torch.bfloat16)},
            "epoch": 3, "lr": 1e-3, "name": "x", "history": [{"epoch": 1, "val": float("nan")}],
            "rng": capture_rng_state(torch.Generator().manual_seed(1)), "none": None, "pair": (1, 2.5)}


def test_round_trip_and_atomic_write(tmp_path: Path) -> None:
    p = _payload()
    path = save_checkpoint(p, tmp_path / "ck.pt")
    save_checkpoint(p, path)  # overwrite in place
    assert sorted(x.name for x in tmp_path.iterdir()) == ["ck.pt"]  # no temporary left
    back = load_checkpoint(path)
    assert torch.equal(back["model_state"]["w"], p["model_state"]["w"])  # type: ignore[index]
    assert back["epoch"] == 3 and back["pair"] == (1, 2.5) and back["none"] is None
    assert back["sha256"] == content_digest(back)
    # weights_only load works for third parties too.
    assert torch.load(path, weights_only=True)["name"] == "x"


def _flip_byte_in_tensor_data(path: Path, needle: bytes) -> None:
    blob = bytearray(path.read_bytes())
    i = blob.find(needle)
    assert i > 0
    blob[i] ^= 0xFF
    path.write_bytes(bytes(blob))


def test_corrupted_checkpoints_raise(tmp_path: Path) -> None:
    w = torch.arange(64, dtype=torch.float32) + 0.5
    path = save_checkpoint({"model_state": {"w": w}, "epoch": 1}, tmp_path / "ck.pt")
    _flip_byte_in_tensor_data(path, (w[10:12]).numpy().tobytes())
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)
    path = save_checkpoint({"model_state": {"w": w}, "epoch": 1}, tmp_path / "ck2.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"w": w}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(tmp_path / "plain.pt")
    torch.save({"obj": Path("/etc")}, tmp_path / "unsafe.pt")  # arbitrary object: refused
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "unsafe.pt")


def test_rng_state_round_trip() -> None:
    gen = torch.Generator().manual_seed(7)
    state = capture_rng_state(gen)
    first = (random.random(), np.random.rand(), torch.rand(3), torch.rand(2, generator=gen))
    random.random(), np.random.rand(), torch.rand(5), torch.rand(5, generator=gen)
    restore_rng_state(state, gen)
    again = (random.random(), np.random.rand(), torch.rand(3), torch.rand(2, generator=gen))
    assert first[0] == again[0] and first[1] == again[1]
    assert torch.equal(first[2], again[2]) and torch.equal(first[3], again[3])


OPTIONS = {"classes": CLASSES, "model": "semi_convlstm", "time_steps": 4, "hidden": 6, "patch": 16, "stride": 8,
           "epochs": 3, "batch_size": 3, "val_fraction": 0.25, "block_size": 16, "buffer": 0, "device": "cpu",
           "rampup_epochs": 2, "lr": 0.01, "consistency_weight": 1.0, "dropout": 0.3, "noise_std": 0.1,
           "temporal_jitter": 0.2, "seed": 5}


def stop_after(epochs: int) -> Callable[[dict[str, float]], bool]:
    """An ``on_epoch_end`` callback that stops the run once ``epochs`` epochs (counted in the
    metrics rows, resumed ones included) are done: an interrupted run, its checkpoint left."""
    return lambda row: row["epoch"] >= epochs


def test_interrupted_run_resumes_to_identical_weights(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torch.set_num_threads(1)
    f, lab = make_dataset()
    seen: list[dict[str, float]] = []
    straight = train_model(f, lab, tmp_path / "straight", OPTIONS, on_epoch_end=seen.append)  # None: go on
    assert straight.completed and straight.epochs_run == 3
    assert [r["epoch"] for r in seen] == [1, 2, 3]
    part = train_model(f, lab, tmp_path / "resumed", OPTIONS, on_epoch_end=stop_after(1))
    assert not part.completed
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 1
    with caplog.at_level(logging.INFO, logger="pipeline.training.loop"):
        resumed = train_model(f, lab, tmp_path / "resumed", OPTIONS)
    assert "resuming from" in caplog.text and "after epoch 1" in caplog.text
    assert resumed.completed and resumed.epochs_run == 3
    for name in ("model.pt", "checkpoint.pt"):
        a = load_checkpoint(tmp_path / "straight" / name)
        b = load_checkpoint(tmp_path / "resumed" / name)
        assert a["epoch"] == b["epoch"]
        for k, v in a["model_state"].items():
            assert torch.equal(v, b["model_state"][k]), (name, k)
    ha = [{k: v for k, v in r.items() if k != "seconds"} for r in load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["loop_state"]["history"]]
    hb = [{k: v for k, v in r.items() if k != "seconds"} for r in load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["loop_state"]["history"]]
    assert ha == hb
    assert ha[2]["cons_loss"] > 0  # the stochastic consistency term was really exercised
    # A different seed gives different weights (the comparison above can fail).
    other = train_model(f, lab, tmp_path / "other", {**OPTIONS, "seed": 6, "epochs": 1})
    assert other.completed
    a = load_checkpoint(tmp_path / "straight" / "model.pt")["model_state"]
    c = load_checkpoint(tmp_path / "other" / "model.pt")["model_state"]
    assert not torch.equal(a["head.weight"], c["head.weight"])


def test_corrupted_checkpoint_is_not_silently_resumed(tmp_path: Path) -> None:
    f, lab = make_dataset(size=32)
    opts = {**OPTIONS, "epochs": 2}
    train_model(f, lab, tmp_path / "m", opts, on_epoch_end=stop_after(1))
    ck = tmp_path / "m" / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[:-100])
    with pytest.raises(CheckpointError):
        train_model(f, lab, tmp_path / "m", opts)
    model_pt = tmp_path / "m" / "model.pt"
    data = load_checkpoint(model_pt)
    head = data["model_state"]["head.bias"].numpy().tobytes()
    _flip_byte_in_tensor_data(model_pt, head)
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(tmp_path / "m")
