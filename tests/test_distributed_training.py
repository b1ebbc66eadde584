"""Data-parallel training (torch DDP under torchrun, gloo on CPU): two processes with half of
every global batch each train like one process with the whole batch; the pure pieces
(batch sharding, loss normalizers, torchrun environment, option checks) on their own."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from test_train_stage import FAST, make_dataset

from pipeline.errors import ConfigError
from pipeline.inference.loading import load_model, predict_window
from pipeline.models.files import load_checkpoint
from pipeline.raster.zarr_io import write_zarr_atomic
from pipeline.train import main
from pipeline.training.distributed import (
    SINGLE,
    World,
    check_batch_size,
    launched_world,
    rank_seed,
    shard,
    threads_per_process,
)
from pipeline.training.losses import minibatch_loss
from pipeline.training.trainer import train_model

TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")
# semi_convlstm on windows with and without labels (date 3 unlabelled); 5 labelled + 4
# unlabelled windows per epoch in global batches of 4: 4 + 4 + 1, so the last batch leaves
# the second process without a window
BASE = {**FAST, "model": "semi_convlstm", "batch_size": 4, "epochs": 4, "rampup_epochs": 1,
        "consistency_weight": 1.0, "max_windows_per_epoch": 5, "unlabelled_window_ratio": 0.8}
DETERMINISTIC = {**BASE, "dropout": 0.0, "noise_std": 0.0, "temporal_jitter": 0.0}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, xr.Dataset, xr.Dataset]:
    f, lab = make_dataset()
    lab["labels"][3] = 0  # windows ending on date 3 hold no label: consistency-only windows
    root = tmp_path_factory.mktemp("ddp")
    return write_zarr_atomic(f, root / "features.zarr"), write_zarr_atomic(lab, root / "labels.zarr"), f, lab


def _args(stores: tuple[Path, Path, xr.Dataset, xr.Dataset], out: Path, options: dict[str, object]) -> list[str]:
    return ["--features", str(stores[0]), "--labels", str(stores[1]), "--out", str(out),
            "--options", json.dumps(options), "--threads", "1"]


def _torchrun(args: list[str], cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV} | {"OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "pipeline.train", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False)


def _metrics(out: Path) -> dict[str, np.ndarray]:
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model_state"]


def test_two_processes_train_like_one_with_the_whole_batch(stores, tmp_path: Path) -> None:
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert main(_args(stores, single, DETERMINISTIC)) == 0
    proc = _torchrun(_args(stores, ddp, DETERMINISTIC), tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "joined the gloo process group" in proc.stderr
    assert {p.name for p in ddp.iterdir()} == {"model.pt", "checkpoint.pt", "metrics.csv", "model_card.json",
                                              "training_region.tif"}
    a, b = _metrics(single), _metrics(ddp)
    assert list(b["epoch"]) == [1, 2, 3, 4] and b["w"][-1] == 1.0
    for key in ("train_loss", "sup_loss", "cons_loss", "val_loss", "val_oa", "val_f1"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-7, err_msg=key)
    assert a["train_loss"][-1] < 0.6 * a["train_loss"][0]  # it learned: the curves compared are not flat
    wa, wb = _weights(single / "model.pt"), _weights(ddp / "model.pt")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)
    ck = load_checkpoint(ddp / "checkpoint.pt")
    assert ck["epoch"] == 4 and len(ck["rank_rng"]) == 2
    assert not torch.equal(ck["rank_rng"][0]["torch"], ck["rank_rng"][1]["torch"])  # a generator per rank
    card = json.loads((ddp / "model_card.json").read_text())
    assert card["best_epoch"] == json.loads((single / "model_card.json").read_text())["best_epoch"]


def test_semi_convlstm_with_per_rank_noise_trains_and_loads(stores, tmp_path: Path) -> None:
    """Dropout, input noise and jitter are drawn per rank: the curve is not the single-process
    one, only close to it, and the model (saved unwrapped by rank 0) loads in one process."""
    opts = {**BASE, "epochs": 5, "max_windows_per_epoch": None, "unlabelled_window_ratio": 1.0}
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert main(_args(stores, single, opts)) == 0
    proc = _torchrun(_args(stores, ddp, opts), tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    a, b = _metrics(single), _metrics(ddp)
    assert b["cons_loss"][-1] > 0
    np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=0.15)
    np.testing.assert_allclose(b["sup_loss"], a["sup_loss"], rtol=0.15)
    model, meta = load_model(ddp)
    assert meta["model"] == "semi_convlstm" and meta["epoch"] == int(b["epoch"][np.argmin(b["val_loss"])])
    f, lab = stores[2], stores[3]
    x = torch.from_numpy(f["features"].values[-meta["time_steps"]:].astype(np.float32))[None]
    ids = np.array([c["id"] for c in meta["classes"]])
    pred = ids[predict_window(model, x)[0].argmax(0).numpy()]
    assert (pred == lab["labels"].values[-1]).mean() >= 0.9


def test_batch_size_not_divisible_by_the_processes_is_refused() -> None:
    check_batch_size(4, World(0, 2, 0, 2), option="batch_size")
    check_batch_size(3, SINGLE, option="batch_size")
    with pytest.raises(ConfigError, match=r"'batch_size' = 6 .* divisible by 4; set it to 4 or 8"):
        check_batch_size(6, World(1, 4, 1, 4), option="batch_size")
    with pytest.raises(ConfigError, match="set it to 2"):
        check_batch_size(1, World(0, 2, 0, 2), option="pixel_batch_size")


def test_train_model_checks_the_batch_before_joining(stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="'pixel_batch_size' = 255 .* divisible by 2"):
        train_model(stores[2], stores[3], tmp_path / "m", {**FAST, "model": "pixel_lstm", "pixel_batch_size": 255})
    assert not (tmp_path / "m").exists()


def test_shards_cover_the_batch_in_order() -> None:
    idx = torch.tensor([7, 3, 9, 0, 5])
    for size in (1, 2, 3, 5, 7):
        parts = [shard(idx, World(r, size, r, size)) for r in range(size)]
        assert torch.equal(torch.cat(parts), idx)
        assert parts[0].numel() == -(-5 // size)  # rank 0 holds the largest share, never empty
        assert max(p.numel() for p in parts) - min(p.numel() for p in parts) <= 1
    assert shard(idx, SINGLE) is idx
    assert [p.tolist() for p in (shard(idx[:1], World(r, 2, r, 2)) for r in range(2))] == [[7], []]


def test_torchrun_environment() -> None:
    assert launched_world({}) == SINGLE
    assert launched_world({"WORLD_SIZE": "1", "RANK": "0"}) == SINGLE
    env = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert launched_world(env) == World(3, 4, 1, 2)
    with pytest.raises(ConfigError, match="RANK=4"):
        launched_world({"WORLD_SIZE": "4", "RANK": "4"})
    with pytest.raises(ConfigError, match="WORLD_SIZE='two'"):
        launched_world({"WORLD_SIZE": "two"})
    assert threads_per_process(8, World(0, 4, 0, 4)) == 2
    assert threads_per_process(1, World(0, 2, 0, 2)) == 1
    assert threads_per_process(8, SINGLE) == 8 and threads_per_process(None, World(0, 2, 0, 2)) is None
    assert len({rank_seed(0, World(r, 4, r, 4)) for r in range(4)} | {rank_seed(1, World(0, 4, 0, 4))}) == 5


@pytest.mark.parametrize("normalization", ["batch", "labelled"])
def test_sharded_loss_gradients_equal_the_whole_batch(normalization: str) -> None:
    """Two shards normalized by the global pixel counts, times the world size, averaged as DDP
    does: the gradient and the loss of the whole batch (one shard holds no label at all)."""
    g = torch.Generator().manual_seed(0)
    k, n = 3, 6
    logits = torch.randn(n, k, 4, 4, generator=g, dtype=torch.float64)
    logits2 = logits + 0.3 * torch.randn(n, k, 4, 4, generator=g, dtype=torch.float64)
    target = torch.randint(0, k, (n, 4, 4), generator=g)
    target[torch.rand(n, 4, 4, generator=g) < 0.5] = -1
    target[3:] = -1
    usable = torch.rand(n, 4, 4, generator=g) < 0.8
    alpha = torch.tensor([0.5, 1.0, 2.0])
    kw = {"gamma": 2.0, "alpha": alpha, "w": 0.7, "normalization": normalization}

    def grads(parts: list[slice], counts: torch.Tensor | None, world: int) -> tuple[torch.Tensor, list[float]]:
        total = torch.zeros_like(logits)
        means = []
        for sl in parts:
            a, b = logits[sl].clone().requires_grad_(True), logits2[sl].clone().requires_grad_(True)
            loss, sup, cons = minibatch_loss(a, lambda b=b: b, target[sl], usable[sl], global_counts=counts,
                                             world_size=world, **kw)
            loss.backward()
            total[sl] = a.grad / world  # DDP's average (each sample lives on one rank)
            means.append([float(t.detach()) / world for t in (loss, sup, cons)])
        return total, np.sum(means, axis=0).tolist()

    full, full_vals = grads([slice(0, n)], None, 1)
    counts = torch.stack([(target >= 0).sum(), usable.sum()])
    shards, shard_vals = grads([slice(0, 3), slice(3, n)], counts, 2)
    torch.testing.assert_close(shards, full, rtol=1e-6, atol=1e-9)  # the consistency term is float32
    np.testing.assert_allclose(shard_vals, full_vals, rtol=1e-6)
    local, _ = grads([slice(0, 3), slice(3, n)], None, 2)  # local normalizers: not the same gradient
    assert not torch.allclose(local, full, rtol=1e-3)
