"""Prediction throughput (km^2 per minute) and peak memory as the scene grows.

A small ConvLSTM is trained for one epoch on a tiny synthetic series (the weights do not matter
for speed), then the predict stage maps synthetic feature stores of growing size (t dates x 71
channels, float16 Zarr, like the feature stage writes). Each size runs in its own process so its
peak RSS is its own. Usage: ``python bench/bench_predict.py --sizes 256 2048 4096 --time-steps 6
--hidden 16 --tile 512``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
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
    feats = rng.standard_normal((t, channels, size, size), chunks=(1, channels, 512, 512)).astype("float16")
    ds = xr.Dataset(
        {"features": (("time", "channel", "y", "x"), feats),
         "valid": (("time", "y", "x"), da.ones((t, size, size), dtype=bool, chunks=(1, 512, 512)))},
        coords={"time": np.datetime64("2021-01-01", "ns") + np.arange(t) * np.timedelta64(16, "D"),
                "y": 4500000 - 15 - 30 * np.arange(size), "x": 500015 + 30 * np.arange(size),
                "channel": np.arange(channels)}, attrs=ATTRS)
    return write_zarr_atomic(ds, path)


def train_tiny(out: Path, t: int, hidden: int, channels: int) -> Path:
    from pipeline.raster.zarr_io import open_store
    from pipeline.training.trainer import train_model

    store = features_store(out / "train_features.zarr", 64, t + 1, channels)
    f = open_store(store)
    import xarray as xr

    labels = xr.Dataset({"labels": (("time", "y", "x"), np.random.default_rng(0).integers(
        1, 7, (t + 1, 64, 64)).astype(np.uint8))}, coords={k: f[k] for k in ("time", "y", "x")}, attrs=ATTRS)
    train_model(f, labels, out / "model", {"classes": CLASSES, "model": "semi_convlstm", "time_steps": t,
                                           "hidden": hidden, "patch": 32, "stride": 32, "epochs": 1, "val_fraction": 0,
                                           "device": "cpu", "max_windows_per_epoch": 2})
    return out / "model"


def worker(args: argparse.Namespace) -> None:
    import torch

    from pipeline.predict import PredictOptions, run_predict

    torch.set_num_threads(args.threads)
    tmp = Path(args.workdir)
    store = features_store(tmp / f"features_{args.size}.zarr", args.size, args.time_steps, args.channels)
    t0 = time.perf_counter()
    run_predict(store, Path(args.model), tmp / f"map_{args.size}", PredictOptions(tile=args.tile, device="auto"),
                name="bench")
    seconds = time.perf_counter() - t0
    km2 = args.size * args.size * 900 / 1e6
    print(json.dumps({"size": args.size, "seconds": seconds, "km2_per_min": km2 / seconds * 60,
                      "peak_rss_mib": peak_rss_mib()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 2048, 4096])
    parser.add_argument("--time-steps", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--channels", type=int, default=71)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = train_tiny(Path(tmp), args.time_steps, args.hidden, args.channels)
        print(f"machine: {machine()}")
        print(f"model: semi_convlstm, t={args.time_steps}, hidden={args.hidden}, {args.channels} channels, "
              f"tile {args.tile} px + receptive-field halo, {args.threads} torch threads")
        for size in args.sizes:
            out = subprocess.run([sys.executable, __file__, "--worker", "--size", str(size), "--model", str(model),
                                  "--workdir", tmp, "--time-steps", str(args.time_steps), "--channels",
                                  str(args.channels), "--tile", str(args.tile), "--threads", str(args.threads)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{size} x {size} px ({size * size * 900 / 1e6:.0f} km2): {r['seconds']:.1f} s, "
                  f"{r['km2_per_min']:.1f} km2/min, peak RSS {r['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
