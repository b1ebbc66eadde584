"""A run killed at any moment loses nothing: `snakemake --unlock` then
`snakemake --rerun-incomplete maps` finishes with outputs identical to an uninterrupted run, and
no stage ever leaves a half-written output at its final path.

The tiny demo workflow runs in a tmp folder; the uninterrupted run is the session's shared demo
run (tests/conftest.py ``demo_run``, the same config). One run is killed (SIGKILL to the whole Snakemake
process group, as a power cut or an OOM killer would) while the cube is being written, then while
the features are being written, then - killing only the training process, so that Snakemake
itself sees the job fail and cleans up after it - between two training checkpoints, then during
prediction. After every kill, every output present at its final path must be *identical* to the
uninterrupted run's (a half-written output would differ) and the checkpoint must survive.
Comparisons are exact (bit-for-bit arrays and COG pixels; training is deterministic on CPU and
resumes bit-identically from its checkpoint); only wall-clock fields (``seconds``, the report's
``generated`` time) and the tmp folder's path are left out.

The helpers here are shared with tests/test_reliability_soak.py (same session: one reference run,
which the soak test copies before it kills anything).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
import yaml
from conftest import small_config

from pipeline.models.files import load_checkpoint
from pipeline.raster.zarr_io import store_problem

REPO = Path(__file__).resolve().parents[1]
RES = Path("results") / "mini"
MODEL_DIR = RES / "models" / "semi_convlstm"
MAP_DIR = RES / "maps" / "semi_convlstm"
REPORT_DIR = RES / "reports" / "semi_convlstm"
STORES = ("cube.zarr", "features.zarr", "labels.zarr")
MAP_FILES = ("classes.tif", "probabilities.tif", "confidence.tif", "valid_count.tif")
TEXT_FILES = (MAP_DIR / "classes.qml", MAP_DIR / "item.json", MODEL_DIR / "model_card.json",
              MODEL_DIR / "metrics.csv", REPORT_DIR / "accuracy.json", REPORT_DIR / "report.html", RES / "items.json")


def fault_config() -> dict[str, Any]:
    """The tiny demo of tests/test_workflow_demo.py (2 epochs: room to kill between two checkpoints)."""
    return small_config()


EPOCHS = fault_config()["train"]["epochs"]


def new_workdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(fault_config(), sort_keys=False))
    return path


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--cores", "2", *args]


LIVE: set[subprocess.Popen] = set()  # Snakemake runs going on, for stop_runs()
_STOPPED = threading.Event()  # set by stop_runs(): no run starts any more
_LIVE_LOCK = threading.Lock()


def _popen(cmd: list[str], **kwargs: Any) -> subprocess.Popen:
    """``cmd`` started in its own process group and added to :data:`LIVE` (unless stop_runs() was called)."""
    with _LIVE_LOCK:
        if _STOPPED.is_set():
            raise RuntimeError("the session has ended")
        proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        LIVE.add(proc)
        return proc


def run(workdir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Snakemake in its own process group, waited for (killed with its jobs after ``timeout``, or
    when the wait is interrupted)."""
    proc = _popen(snakemake_cmd(workdir, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        kill_group(proc)
        raise
    finally:
        LIVE.discard(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def start(workdir: Path, *args: str) -> subprocess.Popen[bytes]:
    """Snakemake in its own process group (its jobs inherit it), output to a file in ``workdir``."""
    n = len(list(workdir.glob("snakemake-*.out")))
    out = open(workdir / f"snakemake-{n}.out", "wb")  # noqa: SIM115 - closed with the process
    return _popen(snakemake_cmd(workdir, *args), stdout=out, stderr=subprocess.STDOUT)


def stop_runs() -> None:
    """Kill every Snakemake run started here that is still going and start no other (the session
    ends while the soak still runs in the background)."""
    with _LIVE_LOCK:
        _STOPPED.set()
        live = list(LIVE)
    for proc in live:
        if proc.poll() is None:
            kill_group(proc)
        LIVE.discard(proc)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL Snakemake and every job it runs (they share its process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(proc: subprocess.Popen[bytes], condition: Callable[[], bool], *, timeout: float = 180,
             poll: float = 0.01) -> bool:
    """Poll ``condition`` until it holds (True) or the process ends / times out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(poll)
    return False


def stage_pid(workdir: Path, module: str) -> int | None:
    """Pid of the running ``python -m pipeline.<module>`` job of ``workdir`` (Linux /proc)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if b"-m" in argv and f"pipeline.{module}".encode() in argv and Path(cwd) == workdir:
            return int(proc.name)
    return None


def recover(workdir: Path, *command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The documented recovery: remove the stale lock, then repeat the interrupted command
    (default ``maps``) with ``--rerun-incomplete``."""
    unlock = run(workdir, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    return run(workdir, "--rerun-incomplete", *(command or ("maps",)), timeout=timeout)


# --------------------------------------------------------------------------- snapshots


def _neutral(text: str, workdir: Path) -> str:
    """``text`` with the tmp folder's path - and that of the run it was copied from
    (:data:`ORIGINS`) - replaced by ``<workdir>``."""
    for path in (workdir, *ORIGINS.get(workdir, ())):
        text = text.replace(str(path), "<workdir>")
    return text


ORIGINS: dict[Path, list[Path]] = {}  # a copied run folder -> the folder it was copied from


def _without_volatile(obj: Any, workdir: Path) -> Any:
    """JSON-like ``obj`` without wall-clock fields, with the tmp folder's path and the port of the
    loopback STAC API (links in items.json) neutralised."""
    text = _neutral(json.dumps(obj, sort_keys=True, default=str), workdir)
    data = json.loads(re.sub(r"http://127\.0\.0\.1:\d+", "<loopback STAC API>", text))  # the search's own server

    def strip(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in ("seconds", "generated")}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o

    return strip(data)


def _text(path: Path, workdir: Path) -> Any:
    raw = path.read_text()
    if path.suffix == ".json":
        return _without_volatile(json.loads(raw), workdir)
    if path.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(raw)))
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    raw = _neutral(raw, workdir)
    return re.sub(r"&quot;generated&quot;: &quot;[^&]*&quot;", "", raw)


def snapshot(workdir: Path) -> dict[str, Any]:
    """Every output of ``maps`` that exists at its final path, as comparable values."""
    snap: dict[str, Any] = {}
    for name in STORES:
        path = workdir / RES / name
        if path.exists() and store_problem(path) is not None:
            snap.setdefault("incomplete stores", []).append(name)  # set aside by the next run
        elif path.exists():
            with xr.open_zarr(path, consolidated=True) as ds:
                for var in [*ds.data_vars, *ds.coords]:
                    snap[f"{name}/{var}"] = ds[var].values
                snap[f"{name}/.attrs"] = _without_volatile(dict(ds.attrs), workdir)
    for name in ("model.pt", "checkpoint.pt"):
        path = workdir / MODEL_DIR / name
        if path.exists():
            ck = load_checkpoint(path)  # verifies the embedded sha256
            assert torch.load(path, map_location="cpu", weights_only=True)["epoch"] == ck["epoch"]
            snap[f"{name}/epoch"] = ck["epoch"]
            for key, tensor in ck["model_state"].items():
                snap[f"{name}/{key}"] = tensor.numpy()
    for name in MAP_FILES:
        path = workdir / MAP_DIR / name
        if path.exists():
            with rasterio.open(path) as src:
                snap[name] = src.read()
                snap[f"{name}/grid"] = (str(src.crs), tuple(src.transform), src.nodata, src.dtypes)
    for rel in TEXT_FILES:
        if (workdir / rel).exists():
            snap[str(rel)] = _text(workdir / rel, workdir)
    return snap


def assert_same(got: dict[str, Any], ref: dict[str, Any], *, complete: bool) -> None:
    """Every output in ``got`` equals the reference's (``complete``: and none is missing)."""
    assert set(got) <= set(ref), sorted(set(got) - set(ref))
    if complete:
        assert set(got) == set(ref), sorted(set(ref) - set(got))
    trained = str(MODEL_DIR / "model_card.json") in got  # the train rule's output: training finished
    for key, value in got.items():
        if key.startswith(("model.pt/", "checkpoint.pt/", str(MODEL_DIR / "metrics.csv"))) and not trained:
            continue  # files of an unfinished training: an earlier epoch by design (sha256 verified on load)
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, ref[key], err_msg=key)
        else:
            assert value == ref[key], key


def assert_no_partial_outputs(workdir: Path, ref: dict[str, Any]) -> dict[str, Any]:
    """Right after a kill: whatever exists at a final output path is the finished output - or a
    store that Snakemake was deleting before a rerun (its rmtree is not atomic), which fails its
    completion manifest and which the next run sets aside and rebuilds."""
    got = snapshot(workdir)
    got.pop("incomplete stores", None)
    assert_same(got, ref, complete=False)
    return got


_REFERENCE: dict[str, Any] = {}
_REFERENCE_LOCK = threading.Lock()  # the soak takes it in the background (tests/test_reliability_soak.py)


def reference(demo_run: Path) -> tuple[Path, dict[str, Any]]:
    """The uninterrupted run of this session (conftest's ``demo_run``, built once): its folder and
    its snapshot. Read only: a test that reruns or kills works on a copy (conftest ``copy_run``)."""
    with _REFERENCE_LOCK:
        return _reference(demo_run)


def _reference(demo_run: Path) -> tuple[Path, dict[str, Any]]:
    if not _REFERENCE:
        assert yaml.safe_load((demo_run / "config.yaml").read_text()) == yaml.safe_load(
            yaml.safe_dump(fault_config(), sort_keys=False))
        snap = snapshot(demo_run)
        assert {"cube.zarr/reflectance", "features.zarr/features", "labels.zarr/labels", "model.pt/head.weight",
                "classes.tif", str(REPORT_DIR / "accuracy.json")} <= set(snap)
        assert snap["checkpoint.pt/epoch"] == EPOCHS
        _REFERENCE.update(workdir=demo_run, snap=snap)
    return _REFERENCE["workdir"], _REFERENCE["snap"]


@pytest.fixture(scope="module")
def reference_run(demo_run: Path) -> tuple[Path, dict[str, Any]]:
    return reference(demo_run)


# --------------------------------------------------------------------------- the test


def tmp_siblings(workdir: Path, name: str) -> Callable[[], bool]:
    return lambda: any((workdir / RES).glob(f".tmp-{name}.*"))


@pytest.mark.workflow
def test_killed_during_cube_features_training_and_prediction_then_rerun_incomplete(
        reference_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    _, ref = reference_run
    workdir = new_workdir(tmp_path / "run")

    # 1. killed while the cube store is being written
    proc = start(workdir, "maps")
    assert wait_for(proc, tmp_siblings(workdir, "cube.zarr")), "the cube was never written"
    kill_group(proc)
    got = assert_no_partial_outputs(workdir, ref)
    assert not (workdir / RES / "cube.zarr").exists() and str(RES / "items.json") in got

    # 2. rerun, killed while the features store is being written
    assert run(workdir, "--unlock").returncode == 0
    proc = start(workdir, "--rerun-incomplete", "maps")
    assert wait_for(proc, tmp_siblings(workdir, "features.zarr")), "the features were never written"
    kill_group(proc)
    got = assert_no_partial_outputs(workdir, ref)
    assert "cube.zarr/reflectance" in got and "features.zarr/features" not in got
    assert not list((workdir / RES).glob(".tmp-cube.zarr.*"))  # the first kill's leftover is gone

    # 3. rerun; the training process (only) is killed after its first checkpoint: Snakemake sees
    #    the job fail and removes its output (model_card.json) - the checkpoint must survive
    assert run(workdir, "--unlock").returncode == 0
    proc = start(workdir, "--rerun-incomplete", "maps")
    checkpoint = workdir / MODEL_DIR / "checkpoint.pt"
    assert wait_for(proc, checkpoint.exists), "training never wrote a checkpoint"
    pid = stage_pid(workdir, "train")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=120) != 0
    out = (workdir / "snakemake-2.out").read_text()
    assert "Error in rule train_model" in out and "exit status 137" in out  # killed, seen as a failed job
    assert not (workdir / MODEL_DIR / "model_card.json").exists()
    ck = load_checkpoint(checkpoint)
    assert 1 <= ck["epoch"] < EPOCHS, ck["epoch"]
    assert torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"] == ck["epoch"]
    assert_no_partial_outputs(workdir, ref)

    # 4. rerun (no stale lock: Snakemake ended normally); the training resumes from that
    #    checkpoint; the run is killed once prediction has started
    proc = start(workdir, "maps")
    started = workdir / "logs" / "predict_map" / "mini" / "semi_convlstm.log"
    assert wait_for(proc, lambda: started.exists() and "tiles" in started.read_text()), "prediction never started"
    kill_group(proc)
    train_log = (workdir / "logs" / "train_model" / "mini" / "semi_convlstm.log").read_text()
    assert f"after epoch {ck['epoch']}" in train_log and "resuming from" in train_log
    got = assert_no_partial_outputs(workdir, ref)
    assert "model.pt/head.weight" in got and str(MODEL_DIR / "model_card.json") in got

    # 5. the documented recovery finishes the run: identical to the uninterrupted one
    proc_done = recover(workdir)
    assert proc_done.returncode == 0, proc_done.stdout[-3000:] + proc_done.stderr[-3000:]
    assert_same(snapshot(workdir), ref, complete=True)
    assert not list((workdir / "results").rglob(".tmp-*"))
    leftovers = [p for p in (workdir / "results").rglob("*") if p.name.startswith(("predict-", "tmp"))]
    assert not leftovers, leftovers
    dry = run(workdir, "-n", "maps")
    assert "Nothing to be done" in dry.stdout + dry.stderr

    # 6. a run killed while Snakemake was deleting the old features store before rerunning its
    #    job (`--forcerun build_features`: Snakemake's rmtree is not atomic) leaves part of the
    #    store at the final path; here every other file is deleted as that rmtree would. The next
    #    run must notice it (completion manifest) and set it aside - never let a later job read
    #    half a store, whose missing chunks Zarr reads as fill values. The maps, made from the
    #    complete store, stay; the store is rebuilt identical when it is needed again.
    store = workdir / RES / "features.zarr"
    files = sorted(p for p in store.rglob("*") if p.is_file())
    for path in files[::2]:
        path.unlink()
    assert snapshot(workdir)["incomplete stores"] == ["features.zarr"]
    again = run(workdir, "maps")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "features.zarr is incomplete" in again.stderr and "set aside" in again.stderr
    assert not store.exists()
    got = snapshot(workdir)
    assert_same(got, ref, complete=False)
    assert set(ref) - set(got) == {k for k in ref if k.startswith("features.zarr/")}
    rebuilt = run(workdir, str(RES / "features.zarr"))
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:] + rebuilt.stderr[-3000:]
    assert_same(snapshot(workdir), ref, complete=True)
    assert not list((workdir / "results").rglob(".tmp-*"))
