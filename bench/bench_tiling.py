"""Benchmark of tiling: the demo workflow on the same AOI untiled and split into tiles.

Runs ``snakemake --cores N maps`` twice in fresh working directories, on the repository's
``config.yaml`` (the embedded demo) with ``runtime.tiling.tile_size: null`` and with ``--tile-size``
(2 x 2 tiles of the 256 px demo AOI by default), and prints the total wall time of each run
and the time per stage summed over its jobs (Snakemake ``benchmark:`` files; the tile rules
are grouped with the stage they belong to), with the AOI shape, the tiles and the machine.

    python bench/bench_tiling.py                   # demo, 128 px tiles (2 x 2), 2 cores
    python bench/bench_tiling.py --epochs 2        # shorter training (the same in both runs)
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import xarray as xr
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine

from pipeline.config import apply_demo_settings

REPO = Path(__file__).resolve().parents[1]
STAGES = {  # rule -> stage
    "generate_demo": "demo catalog", "search_stac": "search",
    "build_cube": "cube", "build_tile_cube": "cube", "plan_tiles": "plan (dates + PCA per AOI)",
    "build_features": "features", "build_tile_features": "features", "mosaic_features": "features mosaic",
    "build_labels": "labels", "train_model": "train",
    "predict_map": "predict", "predict_tile_map": "predict", "mosaic_map": "map mosaic (VRT + COG)",
    "evaluate_map": "evaluate",
}


def run(config: dict, cores: int) -> tuple[float, dict[str, float], dict[str, int], Path]:
    """Run the workflow in a fresh folder; (wall s, seconds per stage, jobs per stage, folder)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-tiling-"))
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", str(cores), "maps"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    seconds: dict[str, float] = defaultdict(float)
    jobs: dict[str, int] = defaultdict(int)
    for tsv in (workdir / "benchmarks").rglob("*.tsv"):
        rel = tsv.relative_to(workdir / "benchmarks")
        rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        with open(tsv, encoding="utf-8") as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        stage = STAGES.get(rule, rule)
        seconds[stage] += float(row["s"])
        jobs[stage] += 1
    return wall, seconds, jobs, workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile-size", type=int, default=128, help="runtime.tiling.tile_size of the tiled run (px)")
    parser.add_argument("--overlap", type=int, default=None, help="runtime.tiling.overlap (default: automatic)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs of both runs (default: the config's)")
    args = parser.parse_args()

    base = yaml.safe_load((REPO / "config.yaml").read_text())
    if args.epochs is not None:
        base["train"]["epochs"] = args.epochs
    runs = {}
    for name, tiling in (("untiled", {"tile_size": None}), ("tiled", {"tile_size": args.tile_size,
                                                                      "overlap": args.overlap})):
        runs[name] = run({**base, "runtime": {**base.get("runtime", {}), "tiling": tiling}}, args.cores)
        print(f"{name}: {runs[name][0]:.1f} s", flush=True)

    aoi = next(iter(base["aois"]))
    features = xr.open_zarr(runs["untiled"][3] / "results" / aoi / "features.zarr")
    plan = json.loads((runs["tiled"][3] / "results" / aoi / "tiles" / "plan.json").read_text())
    layout = plan["layout"]
    rows = max(t["row"] for t in layout["tiles"]) + 1
    cols = max(t["col"] for t in layout["tiles"]) + 1
    epochs = apply_demo_settings(copy.deepcopy(base))["train"]["epochs"]  # with the demo's own budget
    print(f"machine: {machine()}")
    print(f"AOI '{aoi}': {features.sizes['y']} x {features.sizes['x']} px, {features.sizes['time']} dates, "
          f"{features.sizes['channel']} feature channels; tiled: {rows} x {cols} tiles of {layout['tile_size']} px "
          f"+ {layout['overlap']} px overlap; train.epochs {epochs}; snakemake --cores {args.cores}")
    stages = list(dict.fromkeys(list(STAGES.values()) + list(runs["tiled"][1]) + list(runs["untiled"][1])))
    print(f"{'stage':32s} {'untiled s':>10s} {'tiled s':>10s} {'tiled jobs':>10s}")
    for stage in stages:
        u, t = runs["untiled"][1].get(stage), runs["tiled"][1].get(stage)
        if u is None and t is None:
            continue
        fmt = lambda v: f"{v:10.1f}" if v is not None else f"{'-':>10s}"
        print(f"{stage:32s} {fmt(u)} {fmt(t)} {runs['tiled'][2].get(stage, 0):10d}")
    su, st = sum(runs["untiled"][1].values()), sum(runs["tiled"][1].values())
    print(f"{'sum of jobs':32s} {su:10.1f} {st:10.1f}")
    print(f"{'total wall (snakemake maps)':32s} {runs['untiled'][0]:10.1f} {runs['tiled'][0]:10.1f} "
          f"(tiled / untiled {runs['tiled'][0] / runs['untiled'][0]:.2f}x)")
    for name, r in runs.items():
        print(f"{name} run kept in {r[3]}")


if __name__ == "__main__":
    main()
