"""Strong scaling of the feature stage on dask.distributed: the same cube, 1 then 2 (or more)
worker processes of a LocalCluster on 127.0.0.1 (one thread each), and local threads for
comparison. Prints wall time, Mpixel-dates/s, speed-up and parallel efficiency per setting,
with the shapes and the machine.

    python bench/bench_features_scaling.py                           # 1024 x 1024 x 12 dates
    python bench/bench_features_scaling.py --size 512 --dates 4      # quick check
    python bench/bench_features_scaling.py --workers 1 2 4           # on a bigger machine

The cube is the seeded synthetic cube of bench_features.py (7 bands, ~10 % invalid pixels);
the stage is ``pipeline.features.run_features`` with the offline Gabor stem, as the demo runs
it. Every run writes its own store; the stores are compared at the end (they must be equal).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
from _machine import machine
from bench_features import BANDS, synthetic_cube

from pipeline.enrich import FeatureOptions
from pipeline.features import run_features
from pipeline.raster.zarr_io import write_zarr_atomic


def timed_run(cube: Path, out: Path, options: FeatureOptions, *, threads: int, scheduler: str | None) -> float:
    t0 = time.perf_counter()
    run_features(cube, out, options=options, threads=threads, scheduler=scheduler)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=1024, help="image side (pixels)")
    p.add_argument("--dates", type=int, default=12)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker processes to try")
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args(argv)
    from distributed import LocalCluster

    work = Path(tempfile.mkdtemp(prefix="bench_scaling_", dir=args.workdir))
    cube = work / "cube.zarr"
    write_zarr_atomic(synthetic_cube(args.size, args.dates, args.chunk), cube)
    mpx = args.size * args.size * args.dates / 1e6
    options = FeatureOptions.from_json(f'{{"stem": "gabor", "chunk": {args.chunk}}}')
    print(f"machine: {machine()}")
    print(f"cube: time={args.dates} band={len(BANDS)} y={args.size} x={args.size} chunk={args.chunk} "
          f"({mpx:.1f} Mpixel-dates); features float16, 71 channels, gabor stem")
    rows: list[tuple[str, int, float]] = []
    stores: list[Path] = []
    for n in args.workers:
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, silence_logs=40) as cluster:
            out = work / f"features-{n}w.zarr"
            if n == args.workers[0]:  # warm-up: imports and weights on the workers
                timed_run(cube, work / "warmup.zarr", options, threads=1, scheduler=cluster.scheduler_address)
            rows.append((f"LocalCluster {n} worker process(es) x 1 thread", n,
                         timed_run(cube, out, options, threads=1, scheduler=cluster.scheduler_address)))
            stores.append(out)
    for n in args.workers:
        out = work / f"features-{n}t.zarr"
        rows.append((f"local threads: {n}", n, timed_run(cube, out, options, threads=n, scheduler=None)))
        stores.append(out)
    base = {kind: next(s for label, w, s in rows if label.startswith(kind) and w == args.workers[0])
            for kind in ("LocalCluster", "local threads")}
    print(f"{'setting':46s} {'wall s':>8s} {'Mpx-dates/s':>12s} {'speed-up':>9s} {'efficiency':>10s}")
    for label, n, seconds in rows:
        kind = "LocalCluster" if label.startswith("LocalCluster") else "local threads"
        speedup = base[kind] / seconds
        print(f"{label:46s} {seconds:8.1f} {mpx / seconds:12.2f} {speedup:9.2f} "
              f"{speedup / (n / args.workers[0]):10.2f}")
    ref = xr.open_zarr(stores[0])["features"].values
    same = all(np.array_equal(ref, xr.open_zarr(s)["features"].values, equal_nan=True) for s in stores[1:])
    print(f"all stores equal: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
