"""Cloud-shaped artefacts of a period map: how many test pixels change class when the cloudiest
step of the map's window is dropped.

A map of a period should show the land cover of the period, not the clouds of one step. On a
finished run (``snakemake maps`` in ``--workdir``), the step of the map's window with the fewest
clear observations (``composite.zarr`` ``valid_fraction``, among steps with at least one) is
removed as if it had never been observed (its composite set missing, the series re-filled with
the same linear fill, its ``clear`` channel 0), the features are rebuilt with the run's options
and PCA fit, and the same trained model maps the period again. Printed: the step, its clear
share, the share of test pixels (``labels.zarr`` ``split`` == 1 with a reference) and of all
mapped pixels whose class changes, and the OA of both maps on the test pixels, with the shapes
and the machine.

    python bench/bench_cloud_artefacts.py --workdir /tmp/run --aoi be --model semi_convlstm
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import machine  # noqa: E402

from pipeline.cli import dask_scheduler  # noqa: E402
from pipeline.enrich import FeatureOptions, build_features  # noqa: E402
from pipeline.evaluate import reference_of_period  # noqa: E402
from pipeline.enrich.compute import fit_cube_pca  # noqa: E402
from pipeline.predict import PredictOptions, run_predict  # noqa: E402
from pipeline.raster.zarr_io import open_store, write_zarr_atomic  # noqa: E402
from pipeline.timegrid.composite import fill_linear  # noqa: E402
from pipeline.timegrid.period import period_steps  # noqa: E402
from pipeline.inference.loading import load_model  # noqa: E402


def drop_step(grid: xr.Dataset, step: int) -> xr.Dataset:
    """``grid`` (composite.zarr, linear fill) as if step ``step`` had no clear observation."""
    valid = grid["valid"].load().copy()
    valid[step] = False
    observed = grid["reflectance"].load().where(valid)
    out = grid.copy()
    out["reflectance"] = fill_linear(observed).astype("float32")
    out["valid"] = valid
    return out


def read_classes(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a finished `snakemake maps` run")
    parser.add_argument("--aoi", required=True)
    parser.add_argument("--model", default="semi_convlstm")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    res = args.workdir / "results" / args.aoi
    grid = open_store(res / "composite.zarr", required=("reflectance", "valid"))
    features = open_store(res / "features.zarr", required=("features",))
    labels = xr.open_zarr(res / "labels.zarr")
    model_dir = res / "models" / args.model
    _, meta = load_model(model_dir)
    item = json.loads((res / "maps" / args.model / "item.json").read_text())
    period = {"start": item["properties"]["start_datetime"][:10], "end": item["properties"]["end_datetime"][:10]}
    times = grid.time.values.astype("datetime64[D]")
    index = int(np.flatnonzero(times == np.datetime64(item["properties"]["pipeline:map_step"]))[0])
    t = int(meta["time_steps"])
    window = np.arange(index - t + 1, index + 1)
    fractions = grid["valid_fraction"].values[window]
    observed = fractions > 0  # a step without any clear pixel is already missing: dropping it changes nothing
    step = int(window[observed][np.argmin(fractions[observed])])
    options = FeatureOptions.from_json(json.dumps(features.attrs["features_options"]))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cloud-artefacts-") as tmp, dask_scheduler(args.threads):
        fit = fit_cube_pca(grid, options)
        dropped = build_features(drop_step(grid, step), options, pca=fit)
        store = write_zarr_atomic(dropped, Path(tmp) / "features.zarr")
        predict = PredictOptions.from_options({"target": "period", "period": period, "tile": 256})
        run_predict(store, model_dir, Path(tmp) / "map", predict, name=args.aoi)
        after = read_classes(Path(tmp) / "map" / "classes.tif")
    before = read_classes(res / "maps" / args.model / "classes.tif")
    days = (np.datetime64(period["start"]), np.datetime64(period["end"]))
    reference = reference_of_period(labels, period_steps(labels.time.values, *days), days)
    test = (labels["split"].values == 1) & (reference > 0) & (before > 0)
    mapped = (before > 0) & (after > 0)
    print(f"machine: {machine()}")
    print(f"grid {dict(grid.sizes)}, map step {times[index]}, window {times[window[0]]} .. {times[index]} (t={t}), "
          f"model {args.model}")
    print(f"cloudiest step of the window: {times[step]} (clear share {grid['valid_fraction'].values[step]:.3f}); "
          f"rebuilt features + map in {time.perf_counter() - started:.0f} s")
    print(f"test pixels: {int(test.sum())}; changed class: {float((before[test] != after[test]).mean()):.4f}")
    print(f"mapped pixels: {int(mapped.sum())}; changed class: {float((before[mapped] != after[mapped]).mean()):.4f}")
    print(f"OA on the test pixels: with the step {float((before[test] == reference[test]).mean()):.4f}, "
          f"without it {float((after[test] == reference[test]).mean()):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
