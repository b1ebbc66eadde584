"""Prediction throughput (km^2 per minute at 30 m) and peak memory as the scene grows.

A small Semi-ConvLSTM (the default CPU settings of config.yaml: t=12 monthly steps, hidden 16,
predict tiles of 128 px) is trained for one epoch on a tiny synthetic series (the weights do not
matter for speed), then the full predict stage (tiles, classification, COG writing, STAC item)
maps synthetic feature stores of growing size (t dates x 71 channels, float16 Zarr in 512 px
chunks, like the feature stage writes). Each store is written once per size to a temporary
folder by this (parent) process and deleted after; each prediction runs in its own process, so
its peak RSS (``ru_maxrss`` of the child) is its own and holds no store writing. The child also
samples its RSS every 50 ms, split into anonymous memory and mapped files (the disk-backed
probabilities), and names the function that ran at the anonymous peak.
Usage: ``python bench/bench_predict.py --sizes 1024 2048 4096`` (bench/README.md ran it with
``--time-steps 2``: at t=12 the 4096 px scene takes over an hour on 2 shared cores).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _machine import machine, peak_rss_mib

ATTRS = {"crs": "EPSG:32649", "transform": [30.0, 0.0, 500000.0, 0.0, -30.0, 4500000.0]}
CLASSES = [{"id": i + 1, "name": n, "color": "#808080"} for i, n in enumerate(
    ["cultivated", "forest", "construction", "water", "cloud", "shadow"])]


def features_store(path: Path, size: int, t: int, channels: int) -> Path:
    import dask.array as da
    import xarray as xr

    from pipeline.raster.zarr_io import write_zarr_atomic

    rng = da.random.default_rng(0)
    feats = (rng.random((t, channels, size, size), dtype=np.float32, chunks=(1, channels, 512, 512)) * 4 - 2)
    ds = xr.Dataset(
        {"features": (("time", "channel", "y", "x"), feats.astype("float16")),
         "valid": (("time", "y", "x"), da.ones((t, size, size), dtype=bool, chunks=(1, 512, 512)))},
        coords={"time": np.datetime64("2022-01-01", "ns") + np.arange(t) * np.timedelta64(30, "D"),
                "y": 4500000 - 15 - 30 * np.arange(size), "x": 500015 + 30 * np.arange(size),
                "channel": np.arange(channels)}, attrs=ATTRS)
    return write_zarr_atomic(ds, path)


def train_tiny(out: Path, t: int, hidden: int, channels: int) -> Path:
    import xarray as xr

    from pipeline.labels import with_design
    from pipeline.raster.zarr_io import open_store
    from pipeline.reference.classes import ClassTable
    from pipeline.split.design import DesignOptions
    from pipeline.training.trainer import train_model

    f = open_store(features_store(out / "train_features.zarr", 64, t + 1, channels))
    labels = xr.Dataset({"labels": (("time", "y", "x"), np.random.default_rng(0).integers(
        1, 7, (t + 1, 64, 64)).astype(np.uint8))}, coords={k: f[k] for k in ("time", "y", "x")}, attrs=ATTRS)
    labels = with_design(labels.assign(reference=labels["labels"]), ClassTable.from_config(CLASSES),
                         DesignOptions.from_mapping({"design": "paper", "folds": 2}))
    train_model(f, labels, out / "model", {"classes": CLASSES, "model": "semi_convlstm", "time_steps": t,
                                           "hidden": hidden, "patch": 32, "stride": 32, "epochs": 1, "val_fraction": 0,
                                           "device": "cpu", "max_windows_per_epoch": 2})
    shutil.rmtree(out / "train_features.zarr")
    return out / "model"


def rss_mib() -> dict[str, float]:
    """Current RssAnon and RssFile (+ RssShmem) of this process, MiB."""
    fields = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(("RssAnon", "RssFile", "RssShmem")):
                name, value = line.split(":")
                fields[name] = int(value.split()[0]) / 1024
    return {"anon": fields.get("RssAnon", 0.0), "file": fields.get("RssFile", 0.0) + fields.get("RssShmem", 0.0)}


class Sampler(threading.Thread):
    """Samples the RSS every ``period`` s; keeps the peaks and the main thread's innermost
    pipeline frame at the anonymous peak."""

    def __init__(self, period: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.period, self.stop, self.main = period, threading.Event(), threading.main_thread().ident
        self.peak = {"anon": 0.0, "file": 0.0}
        self.where = ""

    def run(self) -> None:
        while not self.stop.is_set():
            now = rss_mib()
            if now["anon"] > self.peak["anon"]:
                frame, where = sys._current_frames().get(self.main), ""
                while frame is not None and not where:
                    if "/pipeline/" in frame.f_code.co_filename:
                        where = f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}:{frame.f_lineno}"
                    frame = frame.f_back
                self.where = where
            self.peak = {k: max(self.peak[k], now[k]) for k in now}
            time.sleep(self.period)


def worker(args: argparse.Namespace) -> None:
    import torch

    from pipeline.predict import PredictOptions, run_predict

    torch.set_num_threads(args.threads)
    base = rss_mib()
    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    run_predict(Path(args.store), Path(args.model), Path(args.workdir) / f"map_{args.size}",
                PredictOptions(tile=args.tile, device="cpu"), name="bench")
    seconds = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    km2 = args.size * args.size * 900 / 1e6
    print(json.dumps({"size": args.size, "seconds": seconds, "km2_per_min": km2 / seconds * 60,
                      "peak_rss_mib": peak_rss_mib(), "start_rss_mib": base["anon"] + base["file"],
                      "peak_anon_mib": sampler.peak["anon"], "peak_file_mib": sampler.peak["file"],
                      "anon_peak_in": sampler.where}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--time-steps", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--channels", type=int, default=71)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench_predict.", dir="/tmp") as tmp:
        model = train_tiny(Path(tmp), args.time_steps, args.hidden, args.channels)
        print(f"machine: {machine()}")
        print(f"model: semi_convlstm, t={args.time_steps}, hidden={args.hidden}, {args.channels} float16 channels, "
              f"tile {args.tile} px + receptive-field halo, {args.threads} torch threads, CPU", flush=True)
        for size in args.sizes:
            t0 = time.perf_counter()
            store = features_store(Path(tmp) / f"features_{size}.zarr", size, args.time_steps, args.channels)
            written = time.perf_counter() - t0
            try:
                out = subprocess.run([sys.executable, __file__, "--worker", "--size", str(size), "--store", str(store),
                                      "--model", str(model), "--workdir", tmp, "--tile", str(args.tile),
                                      "--threads", str(args.threads)], check=False, capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"worker {size} px failed:\n{out.stderr[-3000:]}")
            finally:
                shutil.rmtree(store, ignore_errors=True)
                shutil.rmtree(Path(tmp) / f"map_{size}", ignore_errors=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            with open("/proc/loadavg", encoding="ascii") as fh:
                load = " ".join(fh.read().split()[:3])
            print(f"{size} x {size} px ({size * size * 900 / 1e6:.0f} km2): {r['seconds']:.1f} s, "
                  f"{r['km2_per_min']:.1f} km2/min, peak RSS {r['peak_rss_mib']:.0f} MiB (at start "
                  f"{r['start_rss_mib']:.0f}; sampled peaks: anonymous {r['peak_anon_mib']:.0f}, mapped files "
                  f"{r['peak_file_mib']:.0f}; anonymous peak in {r['anon_peak_in']}); store written in "
                  f"{written:.0f} s; load {load}", flush=True)


if __name__ == "__main__":
    main()
