"""Stage ``predict``: the trained model over the whole scene -> classified COGs for GIS.

``python -m pipeline.predict --features results/demo/features.zarr --model results/demo/models/semi_convlstm
--out results/demo/maps/semi_convlstm --options '<predict JSON>' --name demo``

The map shows the land cover of a period (``target: period``): it is classified from the
window of ``t`` steps ending at the last step of the period (:mod:`pipeline.timegrid.period`);
with ``target: last_date`` it is made for the last date of the series (the paper's test
setting). With ``dates: all`` there is also a map for every step from ``t`` on. Prediction runs
tile by tile with a halo equal to the model's receptive-field radius, so the map does not
depend on the tile size (no seams) and memory is bounded by one tile whatever the scene size;
the full-size outputs live in disk-backed arrays until written as COGs. The prediction itself
is :mod:`pipeline.inference.prediction`; this stage reads the stores and writes the outputs.

Outputs (``--out``): ``classes.tif`` (uint8 class ids, 0 = nodata, colour table, category
names, MODE overviews), ``probabilities.tif`` (uint8 percent per class, 255 = nodata),
``confidence.tif`` (uint8 percent = the highest class probability, 255 = nodata),
``valid_count.tif`` (uint16 clear observations in the window, 65535 outside the AOI),
``classes.qml`` (QGIS style) and ``item.json`` (STAC Item, classification extension). Pixels
without a single clear observation in the window are nodata. Object-based voting of the map
(``voting``, ``segment_*`` options: config ``voting.method``, ``segmentation``) is the separate
stage :mod:`pipeline.vote`.

Relearning models (:mod:`pipeline.inference.relearning`) load their first-stage model from the
sibling folder named in their record (checked against the weights they were trained with) and
predict from the features extended with its probabilities; their first map date is later by
the first-stage window length minus one.

A tile of a tiled AOI (``--plan results/x/tiles/plan.json --tile r0c1``, :mod:`pipeline.tiling.layout`)
is predicted on its features window (core + overlap) and only its core is written (transform of
the core on the AOI grid); :mod:`pipeline.tiles` ``mosaic-map`` puts the cores together. The overlap must
cover the feature halo plus the model's halo on every side inside the AOI, else the stage stops.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from pipeline.atomic import remove_stale_tmp
from pipeline.cli import base_parser, run_stage
from pipeline.config import parse_options, reject_unknown
from pipeline.errors import ConfigError, PredictionError
from pipeline.inference.loading import load_model
from pipeline.inference.prediction import check_tile, classify_block, predict_date
from pipeline.inference.relearning import check_base, extended_window, load_base
from pipeline.models.device import resolve_device, set_cpu_threads
from pipeline.objects.options import SegmentOptions
from pipeline.raster.cog import (
    write_class_cog,
    write_confidence_cog,
    write_count_cog,
    write_probability_cog,
)
from pipeline.raster.disk_array import RowMap
from pipeline.raster.map_item import map_stac_item, write_map_item
from pipeline.raster.object_store import store_path
from pipeline.raster.qgis_style import write_qml
from pipeline.raster.zarr_io import open_store
from pipeline.tiling.plan import TilePlan
from pipeline.timegrid.period import TargetOptions, map_period, map_step

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictOptions:
    """The ``predict`` config section.

    tile: core tile side in pixels (the halo is added around it); target: ``period`` = the map
    of the land cover of ``period`` (``{start, end}``, default the last full calendar year of the
    series; :mod:`pipeline.timegrid.period`), ``last_date`` = the map of the last date (the
    paper's protocol); dates: ``last`` = only that map, ``all`` = also one map per date from
    ``t`` on (``<date>/`` sub-folders);
    device: ``auto`` (CUDA when present) | ``cpu`` | ``cuda``; voting: ``none`` | ``majority``
    | ``probability`` and segment_method (``felzenszwalb`` | ``slic``), segment_scale,
    segment_size: object-based voting of the map, done by the stage :mod:`pipeline.vote`
    (validated here with the rest of the section; the predict stage itself ignores them).
    """

    tile: int = 256
    target: Literal["period", "last_date"] = "period"
    period: dict[str, str] | None = None
    dates: Literal["last", "all"] = "last"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    voting: Literal["none", "majority", "probability"] = "none"
    segment_method: Literal["felzenszwalb", "slic"] = "felzenszwalb"
    segment_scale: float = 100.0
    segment_size: int = 30

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> PredictOptions:
        """Build from the config section; unknown keys or bad values raise ConfigError."""
        reject_unknown(options, set(cls.__dataclass_fields__), section="predict")
        opts = cls(**options)
        if opts.tile < 16:
            raise ConfigError(f"runtime.predict.tile {opts.tile} is too small (allowed: 16 or more pixels)")
        if opts.dates not in ("last", "all"):
            raise ConfigError(f"predict.dates {opts.dates!r} not allowed (allowed values: last, all)")
        if opts.voting not in ("none", "majority", "probability"):
            raise ConfigError(f"voting.method {opts.voting!r} not allowed (allowed values: none, majority, probability)")
        opts.segments()  # checks segment_*
        opts.target_options()  # checks target and period
        return opts

    def target_options(self) -> TargetOptions:
        """What the map shows (:mod:`pipeline.timegrid.period`)."""
        return TargetOptions.from_mapping({"target": self.target, "period": self.period})

    def segments(self) -> SegmentOptions:
        """The segmentation settings of the voting."""
        return SegmentOptions(method=self.segment_method, scale=float(self.segment_scale), size=int(self.segment_size))


def write_map(probs: Any, count: Any, out_dir: Path, *, meta: dict[str, Any], attrs: dict[str, Any],
              when: dt.datetime, item_id: str, period: tuple[str, str] | None = None) -> None:
    """Write the COGs, the QGIS style and the STAC Item of one map into ``out_dir``.

    ``probs`` (K, y, x) float32 (NaN = nodata) and ``count`` (y, x) int: numpy or disk-backed
    (:func:`pipeline.inference.prediction.predict_date`); the class map and the confidence are
    computed row block by row block as the COGs are written, never held whole."""
    classes = meta["classes"]
    ids = np.array([c["id"] for c in classes], dtype=np.uint8)
    shape = tuple(probs.shape[1:])
    class_map = RowMap(probs, lambda b: classify_block(b, ids)[0], shape=shape, dtype=np.uint8)
    confidence = RowMap(probs, lambda b: classify_block(b, ids)[1], shape=shape, dtype=np.float32)
    grid = {"crs": attrs["crs"], "transform": attrs["transform"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_probability_cog(probs, out_dir / "probabilities.tif", class_table=classes, **grid)
    write_confidence_cog(confidence, out_dir / "confidence.tif", **grid)
    write_count_cog(count, out_dir / "valid_count.tif", **grid)
    write_qml(out_dir / "classes.qml", classes)
    write_class_cog(class_map, out_dir / "classes.tif", class_table=classes, **grid)
    start, end = period or (None, None)
    item = map_stac_item(out_dir, item_id=item_id, map_datetime=when, crs=attrs["crs"], transform=attrs["transform"],
                         shape=class_map.shape, class_table=classes, start_datetime=start, end_datetime=end,
                         properties={"pipeline:model": meta["model"], "pipeline:time_steps": meta["time_steps"],
                                     "pipeline:map_step": str(when.date()),
                                     "pipeline:target": "period" if period else "last_date"})
    write_map_item(item, out_dir / "item.json")
    if log.isEnabledFor(logging.INFO):
        pixels = sum((np.bincount(class_map[r0:r0 + 512].ravel(), minlength=256) for r0 in range(0, shape[0], 512)),
                     np.zeros(256, np.int64))
        log.info("map %s: %s", out_dir, {c["name"]: int(pixels[c["id"]]) for c in classes})


def run_predict(features_path: Path, model_dir: Path, out_dir: Path, options: PredictOptions, *, name: str,
                plan: TilePlan | None = None, tile: str | None = None) -> Path:
    """Predict the map(s) of one AOI with one trained model (or, with ``plan`` and ``tile``, the core
    of one tile of a tiled AOI from that tile's features)."""
    features = open_store(features_path, required=("features", "valid"))
    model, meta = load_model(model_dir)
    record = meta.get("relearning")
    core: tuple[slice, slice] | None = None
    grid = {"crs": features.attrs["crs"], "transform": features.attrs["transform"]}
    if plan is not None:
        aoi_tile = plan.layout.tile(str(tile))
        if (features.sizes["y"], features.sizes["x"]) != aoi_tile.window.shape:
            raise PredictionError(f"{features_path} is not the features store of tile {aoi_tile.id}; rerun the tiles")
        base_meta = load_model(check_base(model_dir, record))[1] if record else None
        check_tile(aoi_tile, plan.layout.shape, meta, base_meta)
        core = aoi_tile.core_in_window
        t = list(features.attrs["transform"])
        grid["transform"] = [t[0], t[1], t[2] + t[0] * core[1].start + t[1] * core[0].start,
                             t[3], t[4], t[5] + t[3] * core[1].start + t[4] * core[0].start]
    extension = int(meta["num_classes"]) if record else 0
    if int(meta["in_channels"]) != features.sizes["channel"] + extension:
        raise PredictionError(
            f"model {model_dir} expects {int(meta['in_channels']) - extension} feature channels, {features_path} has "
            f"{features.sizes['channel']}; retrain after changing the features section"
        )
    device = resolve_device(options.device, what="predict option")
    if isinstance(model, torch.nn.Module):
        model.to(device)
    base = load_base(check_base(model_dir, record), classes=meta["classes"], device=device) if record else None
    n, t = features.sizes["time"], int(meta["time_steps"])
    first = t - 1 + (int(record["first_date_index"]) if record else 0)
    if first > n - 1:
        raise PredictionError(f"model {model_dir} needs {first + 1} dates for a map, {features_path} has {n}")
    target = options.target_options()
    index = map_step(features.time.values, target, attrs=features.attrs, time_steps=t)
    if index < first:
        raise PredictionError(f"the map step {str(features.time.values[index])[:10]} has {index + 1} steps up to it, "
                              f"model {model_dir} needs {first + 1} (time_steps); lower train.time_steps or move "
                              f"predict.period later")
    period = None
    if target.target == "period":
        period = tuple(str(d) for d in map_period(features.time.values, target, features.attrs))
        log.info("map of the period %s .. %s from the window of %d steps ending %s", *period, t,
                 str(features.time.values[index])[:10])
    indices = [index] if options.dates == "last" else [*range(first, index), index]
    cache: dict[int, np.ndarray] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(out_dir / "predict")  # the scratch folder of a killed run (.tmp-predict.*)
    with tempfile.TemporaryDirectory(prefix=".tmp-predict.", dir=out_dir) as tmp:
        for index in indices:
            when = np.datetime64(features.time.values[index], "s").astype(dt.datetime)
            if base is None:
                probs, count = predict_date(features, index, model, meta, tile=options.tile, workdir=Path(tmp))
            else:
                window = extended_window(features, index, t, *base, record=record, classes=meta["classes"],
                                         workdir=Path(tmp), cache=cache)
                probs, count = predict_date(window, t - 1, model, meta, tile=options.tile, workdir=Path(tmp))
            folder = out_dir if index == indices[-1] else out_dir / when.date().isoformat()
            if core is not None:  # a tile: its core only
                probs, count = probs[:, core[0], core[1]], count[core]
            write_map(probs, count, folder, meta=meta, attrs=grid, when=when,
                      item_id=f"{name}-{meta['model']}-{when.date().isoformat()}",
                      period=period if index == indices[-1] else None)
            del probs
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, type=store_path, help="features.zarr (path or fsspec URL)")
    parser.add_argument("--model", required=True, type=Path, help="trained model folder")
    parser.add_argument("--out", required=True, type=Path, help="map folder to write")
    parser.add_argument("--name", default="map", help="AOI name (STAC item ids)")
    parser.add_argument("--options", default="{}", help="the predict config section as JSON")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--plan", type=Path, default=None, help="plan.json of a tiled AOI (with --tile)")
    parser.add_argument("--tile", default=None, help="tile id (r0c1) of --features in the plan's layout")
    args = parser.parse_args(argv)

    def work() -> None:
        set_cpu_threads(max(args.threads, 1))
        options = PredictOptions.from_options(parse_options(args.options, what="predict"))
        if (args.plan is None) != (args.tile is None):
            raise ConfigError("--plan and --tile go together (a tile of a tiled AOI)")
        run_predict(args.features, args.model, args.out, options, name=args.name,
                    plan=TilePlan.read(args.plan) if args.plan else None, tile=args.tile)

    return run_stage(work, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
