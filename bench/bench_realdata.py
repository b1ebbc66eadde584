"""Benchmark on real labelled data: the WorldCereal Belgium 2018 patch, Landsat 8 and Sentinel-2.

For each sensor, in a fresh working directory: the patch is converted as a user would
(``bench/worldcereal.py``: COGs, ``python -m pipeline.index``, crop-code label rasters, a config
with the data-specific keys only), the project's defaults are the repository's ``config.yaml``
less its data sections (the demo's AOI, catalog, sensor, labels, classes, and the demo's own
settings: its training budget, stem, label scarcity; the schema's defaults apply), with the schema's
default stem (ImageNet ResNet-18 conv1, read from ``../shared/weights`` instead of downloaded)
and ``experiments.models`` = ``--models``; then ``snakemake --cores N compare`` trains and scores
every model on the default spatial test design.

Beside the pipeline, a plain per-pixel scikit-learn RandomForest (no project code in its model
path): the raw bands read from the netCDFs, masked by the quality flags (Landsat Collection 1
``pixel_qa`` clear or water bit; Sentinel-2 SCL not in {0, 1, 3, 8, 9, 10, 11}), same-day scenes
averaged, gaps filled linearly along time (ends: nearest clear value), every date's bands as
features, trained on the training pixels of the pipeline's design and scored on the SAME test
pixels (``split`` and ``reference`` read from the pipeline's ``labels.zarr``).

Prints one table per sensor (model, OA, kappa, weighted F1, test pixels, per-class support) with
the shapes and the machine, and writes ``bench_realdata.json`` in the working directory.

    python bench/bench_realdata.py                          # both sensors, 5 models, 2 cores
    python bench/bench_realdata.py --sensors landsat8 --models rf convlstm
    python bench/bench_realdata.py --design paper           # the paper's protocol instead
    python bench/bench_realdata.py --set features.validity_channel=false   # an ablation
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import worldcereal
from _machine import machine

REPO = Path(__file__).resolve().parents[1]
MODELS = ["rf", "svm", "pixel_lstm", "convlstm", "semi_convlstm"]
DATA_SECTIONS = ("aois", "catalog", "sensor", "labels", "classes", "demo")
SCL_INVALID = (0, 1, 3, 8, 9, 10, 11)
AOI = "wcbe"


def project_defaults(models: list[str], design: str, overrides: list[str] = ()) -> dict:
    """The repository's config.yaml without its data sections (with them go the demo's own
    settings, ``demo.settings``: the schema's defaults apply), the default stem from a local file.

    ``overrides``: ``section.key=value`` strings (value parsed as YAML) set after the defaults,
    for ablations, e.g. ``features.validity_channel=false`` or ``train.epochs=30``.
    """
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for key in DATA_SECTIONS:
        config.pop(key, None)
    config.pop("cube", None)  # resolution and anchor come from the data config; the rest are defaults
    config["features"]["stem_weights"] = str(REPO.parent / "shared" / "weights" / "resnet18_imagenet_conv1.npz")
    config["experiments"]["models"] = models
    config.setdefault("evaluation", {})["design"] = design
    for item in overrides:
        dotted, sep, value = item.partition("=")
        if not sep or "." not in dotted:
            raise SystemExit(f"--set {item!r}: expected section.key=value, e.g. train.epochs=30")
        *path, key = dotted.split(".")
        node = config
        for part in path:
            node = node.setdefault(part, {})
        node[key] = yaml.safe_load(value)
    return config


def run_compare(workdir: Path, sensor: str, config_file: Path, cores: int) -> float:
    """``snakemake compare`` in ``workdir``; wall seconds."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", str(cores), "compare", "--configfile", str(config_file)]
    start = time.perf_counter()
    with open(workdir / f"compare-{sensor}.log", "w", encoding="utf-8") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, check=False)
    if proc.returncode:
        tail = (workdir / f"compare-{sensor}.log").read_text()[-4000:]
        raise SystemExit(f"snakemake compare failed for {sensor} (log {workdir}/compare-{sensor}.log):\n{tail}")
    return time.perf_counter() - start


def pipeline_rows(results: Path, models: list[str]) -> list[dict]:
    """Scores of every model (and its voted map, when there is one) from the accuracy reports."""
    rows = []
    for model in models:
        for name, path in ((model, results / "reports" / model / "accuracy.json"),
                           (f"{model}+voting", results / "reports" / model / "voted" / "accuracy.json")):
            if path.is_file():
                rows.append(score_row(name, json.loads(path.read_text())))
    return rows


def score_row(name: str, report: dict) -> dict:
    return {"model": name, "oa": report["overall_accuracy"], "kappa": report["kappa"],
            "f1_weighted": report["f1_weighted"], "test_pixels": report["evaluated_pixels"],
            "support": {k: v["support"] for k, v in report["per_class"].items()}}


# ---- the plain scikit-learn baseline (numpy + scikit-learn only) ---------------------------

def clear_series(sensor: str, last_day: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Raw reflectance (day, band, y, x) float32 with NaN where not clear, the days, band names.

    Same-day scenes are averaged over their clear values; days after ``last_day`` are dropped.
    """
    if sensor == "landsat8":
        ds = worldcereal.open_netcdf("L8_SR_10m")
        bands = list(worldcereal.L8_BANDS)
        refl = np.stack([ds[b].values for b in bands], axis=1).astype(np.float32) * worldcereal.SCALE
        qa = ds["pixel_qa"].values.astype(np.int64)
        clear = (qa != 0) & ((((qa >> 1) & 1) == 1) | (((qa >> 2) & 1) == 1)) & (((qa >> 3) & 1) == 0) \
            & (((qa >> 5) & 1) == 0)
    else:
        d10, d20 = worldcereal.open_netcdf("S2_L2A_10m"), worldcereal.open_netcdf("S2_L2A_20m")
        up = lambda a: np.repeat(np.repeat(a, 2, axis=-2), 2, axis=-1)
        bands = [*worldcereal.S2_BANDS_10M, *worldcereal.S2_BANDS_20M]
        layers = [d10[b].values for b in worldcereal.S2_BANDS_10M] + [up(d20[b].values) for b in worldcereal.S2_BANDS_20M]
        refl = np.stack(layers, axis=1).astype(np.float32) * worldcereal.SCALE
        clear = ~np.isin(up(d20["SCL"].values), SCL_INVALID)
        ds = d10
    clear &= (refl > 0).all(axis=1)
    refl[np.broadcast_to(~clear[:, None], refl.shape)] = np.nan
    days = ds["timestamp"].values.astype("datetime64[D]")
    keep = days <= np.datetime64(last_day)
    refl, days = refl[keep], days[keep]
    unique = np.unique(days)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN days of a pixel stay NaN
        merged = np.stack([np.nanmean(refl[days == d], axis=0) for d in unique])
    return merged, unique, bands


def gap_fill(series: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Linear interpolation of NaNs along the first axis (ends: nearest value; no clear value: 0)."""
    t = days.astype("datetime64[D]").astype(np.float64)
    flat = series.reshape(series.shape[0], -1)
    out = np.zeros_like(flat)
    for j in range(flat.shape[1]):
        ok = np.isfinite(flat[:, j])
        if ok.any():
            out[:, j] = np.interp(t, t[ok], flat[ok, j])
    return out.reshape(series.shape)


def sklearn_baseline(sensor: str, labels_store: Path, last_day: str, cores: int) -> tuple[dict, dict]:
    """The plain RF on the pipeline's split, on the acquisitions up to ``last_day``; (score row, shapes)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

    labels = xr.open_zarr(labels_store).load()
    split, reference = labels["split"].values, labels["reference"].values[-1]
    names = {c["id"]: c["name"] for c in labels.attrs["classes"]}
    series, days, bands = clear_series(sensor, last_day)
    filled = gap_fill(series, days)                                  # (day, band, y, x)
    x = filled.reshape(filled.shape[0] * filled.shape[1], -1).T     # (pixel, day * band)
    y = reference.reshape(-1)
    train = (split.reshape(-1) == 0) & (y > 0)
    test = (split.reshape(-1) == 1) & (y > 0)
    start = time.perf_counter()
    rf = RandomForestClassifier(n_estimators=500, n_jobs=cores, random_state=0).fit(x[train], y[train])
    pred = rf.predict(x[test])
    seconds = time.perf_counter() - start
    support = {names[c]: int(np.sum(y[test] == c)) for c in sorted(names)}
    row = {"model": "sklearn RF (raw bands, gap-filled)", "oa": float(accuracy_score(y[test], pred)),
           "kappa": float(cohen_kappa_score(y[test], pred)),
           "f1_weighted": float(f1_score(y[test], pred, average="weighted")), "test_pixels": int(test.sum()),
           "support": support}
    shapes = {"days": int(days.size), "bands": bands, "features": int(x.shape[1]),
              "train_pixels": int(train.sum()), "train_support": {names[c]: int(np.sum(y[train] == c)) for c in sorted(names)},
              "clear_share": float(np.isfinite(series[:, 0]).mean()), "rf_seconds": round(seconds, 1)}
    return row, shapes


# ---- driver ----------------------------------------------------------------------------------

def bench_sensor(sensor: str, root: Path, models: list[str], design: str, cores: int,
                 overrides: list[str] = ()) -> dict:
    """Convert, run compare, fit the baseline; the sensor's record."""
    workdir = root / sensor
    conv = worldcereal.convert(workdir, sensors=(sensor,))
    (workdir / "config.yaml").write_text(yaml.safe_dump(project_defaults(models, design, overrides), sort_keys=False))
    wall = run_compare(workdir, sensor, conv.configs[sensor], cores)
    results = workdir / "results" / AOI
    rows = pipeline_rows(results, models)
    report = json.loads((results / "reports" / models[0] / "accuracy.json").read_text())
    # the series the map saw: up to the end of its period (period maps) or its date (per-date protocol)
    last_day = (report.get("map_period") or {}).get("end") or report["map_date"]
    baseline, shapes = sklearn_baseline(sensor, results / "labels.zarr", last_day, cores)
    cube = xr.open_zarr(results / "cube.zarr")
    labels = xr.open_zarr(results / "labels.zarr")
    return {"sensor": sensor, "workdir": str(workdir), "compare_wall_s": round(wall, 1),
            "cube": {k: int(v) for k, v in cube.sizes.items()}, "map_date": report["map_date"],
            "map_period": report.get("map_period"), "steps": int(labels.sizes["time"]),
            "design": labels.attrs.get("design"), "overrides": list(overrides), "rows": [*rows, baseline], "baseline_shapes": shapes}


def print_record(rec: dict) -> None:
    cube = rec["cube"]
    print(f"\n## {rec['sensor']}: cube {cube['time']} dates x {cube['band']} bands x {cube['y']} x {cube['x']} px, "
          f"{rec.get('steps')} steps, map date {rec['map_date']} (period {rec.get('map_period')}), "
          f"compare {rec['compare_wall_s']:.0f} s")
    design = rec["design"] or {}
    print(f"design {design.get('kind')}: block {design.get('block_size')} px, buffer {design.get('buffer_px')} px, "
          f"{design.get('test_blocks')} test blocks; pixels per class {design.get('class_pixels')}")
    shapes = rec["baseline_shapes"]
    print(f"baseline: {shapes['days']} days x {len(shapes['bands'])} bands = {shapes['features']} features, "
          f"{shapes['train_pixels']} training pixels {shapes['train_support']}, clear share {shapes['clear_share']:.2f}")
    print("| model | OA | kappa | W-F1 | test px | support |")
    print("|---|---|---|---|---|---|")
    for r in rec["rows"]:
        support = ", ".join(f"{k} {v}" for k, v in r["support"].items())
        print(f"| {r['model']} | {r['oa']:.3f} | {r['kappa']:.3f} | {r['f1_weighted']:.3f} | {r['test_pixels']} | {support} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensors", nargs="+", default=list(worldcereal.SENSORS), choices=worldcereal.SENSORS)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--design", default="spatial_blocks", choices=["spatial_blocks", "paper"])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a fresh temporary folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config key set after the defaults (ablations), e.g. features.validity_channel=false")
    args = parser.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-realdata-"))
    print(f"{dt.date.today()} | {machine()} | os.cpu_count() {os.cpu_count()} | --cores {args.cores} | {root}")
    records = []
    for sensor in args.sensors:
        records.append(bench_sensor(sensor, root, args.models, args.design, args.cores, args.overrides))
        print_record(records[-1])
        (root / "bench_realdata.json").write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
