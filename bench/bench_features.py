"""Benchmark of the feature stage: throughput and peak memory vs the bare convolution.

Writes a synthetic seeded cube.zarr (time, 7 bands, size, size; ~10 % invalid pixels), runs
``python -m pipeline.features`` on it in a subprocess (wall time, peak RSS of that process via
``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``), then times the compute-only rate of the same
stem (conv 7x7/2 + bilinear upsampling, :func:`pipeline.enrich.stem_dense`) on in-memory
float32 arrays of the same size. Prints Mpixel-dates/s, shapes and the machine, and as its last
line ``stage/compute ratio: R``: the stage rate (timed inside the stage process around
``pipeline.features.main``: PCA sample pass, computation and write, without interpreter start
and imports) over the compute-only rate, both measured in this run.

    python bench/bench_features.py                      # 2048 x 2048 x 24 dates (long)
    python bench/bench_features.py --size 512 --dates 4 # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dask.array as da
import numpy as np
import torch
import xarray as xr
from _machine import (
    machine,  # bench/_machine.py (the script's own folder is on sys.path)
)

from pipeline.enrich import gabor_filter_bank, stem_dense
from pipeline.models.device import resolve_device
from pipeline.raster.zarr_io import write_zarr_atomic

BANDS = ["coastal", "blue", "green", "red", "nir08", "swir16", "swir22"]


def synthetic_cube(size: int, dates: int, chunk: int, seed: int = 0) -> xr.Dataset:
    """Lazy seeded cube: reflectance (time, band, y, x) float32 in 0..0.6, ~10 % invalid."""
    rs = da.random.RandomState(seed)
    shape = (dates, len(BANDS), size, size)
    refl = (rs.random_sample(shape, chunks=(1, -1, chunk, chunk)) * 0.6).astype(np.float32)
    valid = rs.random_sample((dates, size, size), chunks=(1, chunk, chunk)) > 0.1
    return xr.Dataset(
        {"reflectance": (("time", "band", "y", "x"), refl), "valid": (("time", "y", "x"), valid)},
        coords={
            "time": (np.datetime64("2021-01-01", "D") + 16 * np.arange(dates)).astype("datetime64[ns]"),
            "band": BANDS,
            "y": 5_000_000.0 - 30.0 * np.arange(size) - 15.0,
            "x": 500_000.0 + 30.0 * np.arange(size) + 15.0,
        },
        attrs={"crs": "EPSG:32649", "transform": [30.0, 0.0, 500_000.0, 0.0, -30.0, 5_000_000.0]},
    )


# Replaces the stage's features encoding in its process for --codec (a comparison, not an option).
CODECS = {
    "store": "",
    "none": "import pipeline.enrich.compute as c; c.features_encoding = lambda: {'compressors': None}; ",
    "lz4": ("import pipeline.enrich.compute as c; from zarr.codecs import BloscCodec; c.features_encoding = lambda: "
            "{'compressors': (BloscCodec(cname='lz4', clevel=5, shuffle='bitshuffle'),)}; "),
    "zstd": ("import pipeline.enrich.compute as c; from zarr.codecs import BloscCodec; c.features_encoding = lambda: "
             "{'compressors': (BloscCodec(cname='zstd', clevel=3, shuffle='bitshuffle'),)}; "),
}


def compute_only(size: int, dates: int, threads: int, device: torch.device) -> float:
    """Seconds of the bare stem (one date at a time) on in-memory (1, 3, size, size) arrays."""
    torch.set_num_threads(threads)
    weight = torch.from_numpy(gabor_filter_bank()).to(device)
    rng = np.random.default_rng(0)
    z = torch.from_numpy(rng.standard_normal((1, 3, size, size), dtype=np.float32)).to(device)
    with torch.no_grad():
        stem_dense(z, weight)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(dates):
            out = stem_dense(z, weight)
            del out
        if device.type == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=2048, help="image side (pixels)")
    p.add_argument("--dates", type=int, default=24)
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--stem", default="gabor", help="gabor (offline) or resnet18 (+ --stem-weights)")
    p.add_argument("--stem-weights", default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--workdir", type=Path, default=None, help="where to write the stores")
    p.add_argument("--keep", action="store_true", help="keep the stores")
    p.add_argument("--codec", default="store", choices=["store", "none", "lz4", "zstd"],
                   help="codec of the features variable: the store's (pipeline.raster.zarr_io.features_encoding), "
                        "or one to compare: none (uncompressed), lz4 / zstd (Blosc level 5 / 3, bit shuffle)")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench_features_", dir=args.workdir))
    cube_path, out_path = work / "cube.zarr", work / "features.zarr"
    device = resolve_device(args.device, what="features option")
    print(f"machine: {machine()}")
    print(f"platform: {platform.platform()} | {platform.processor() or platform.machine()} | "
          f"cpu_count={os.cpu_count()} | torch {torch.__version__} threads={torch.get_num_threads()} | "
          f"device={device}" + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""))
    mpx = args.size * args.size * args.dates / 1e6
    print(f"cube: time={args.dates} band={len(BANDS)} y={args.size} x={args.size} chunk={args.chunk} "
          f"({mpx:.1f} Mpixel-dates, {mpx * len(BANDS) * 4:.0f} MB float32)")

    t0 = time.perf_counter()
    write_zarr_atomic(synthetic_cube(args.size, args.dates, args.chunk), cube_path)
    print(f"synthetic cube written in {time.perf_counter() - t0:.1f} s")

    options = {"stem": args.stem, "chunk": args.chunk, "device": args.device}
    if args.stem_weights:
        options["stem_weights"] = args.stem_weights
    timed_main = CODECS[args.codec] + ("import sys, time; from pipeline.features import main; t = time.perf_counter(); "
                  "rc = main(sys.argv[1:]); print(f'STAGE_SECONDS {time.perf_counter() - t}', file=sys.stderr); "
                  "sys.exit(rc)")
    cmd = [sys.executable, "-c", timed_main, "--cube", str(cube_path), "--out", str(out_path),
           "--options", json.dumps(options), "--threads", str(args.threads)]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pipeline.features"], check=True)
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return proc.returncode
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    disk_mb = sum(f.stat().st_size for f in out_path.rglob("*") if f.is_file()) / 1e6
    out_c = 64 + len(BANDS)
    print(f"stage: features (time={args.dates}, channel={out_c}, y={args.size}, x={args.size}) float16, "
          f"threads={args.threads}, codec {args.codec}")
    print(f"stage: {wall:.2f} s wall (incl. interpreter start, PCA sample pass, write) -> "
          f"{mpx / wall:.2f} Mpixel-dates/s; peak RSS {peak_mb:.0f} MB; store {disk_mb:.0f} MB")
    inner = float(next(line.split()[1] for line in proc.stderr.splitlines() if line.startswith("STAGE_SECONDS")))
    stage_rate = mpx / inner
    print(f"stage without interpreter start + imports ({startup:.2f} s apart; timed inside the process): "
          f"{inner:.2f} s -> {stage_rate:.2f} Mpixel-dates/s")

    n_dates = min(args.dates, 4)
    sec = compute_only(args.size, n_dates, args.threads, device)
    cmpx = args.size * args.size * n_dates / 1e6
    print(f"compute-only: stem_dense (1, 3, {args.size}, {args.size}) x {n_dates} dates, torch threads="
          f"{args.threads}: {sec:.2f} s -> {cmpx / sec:.2f} Mpixel-dates/s")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"stores kept in {work}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"stage/compute ratio: {stage_rate / (cmpx / sec):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
