"""``train_model``: features + labels -> a trained model folder (the train stage's library call).

Output folder (``results/{aoi}/models/{model}``): torch models write ``model.pt`` (best
weights + model args + classes), ``checkpoint.pt`` (last epoch, for resuming),
``metrics.csv`` and ``model_card.json``; rf/svm write ``model.joblib`` + ``model.json``,
``metrics.csv`` and ``model_card.json``; both write ``training_region.tif`` (which pixels were
training, validation, test and buffer; the card holds the labelled pixel-dates per class of each).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from pipeline.atomic import atomic_path, write_text_atomic
from pipeline.errors import ConfigError, TrainingError
from pipeline.inference.relearning import base_model_dir
from pipeline.models.build import build_model
from pipeline.models.device import (
    configure_runtime,
    prepare_model,
    resolve_device,
    seed_everything,
)
from pipeline.models.files import JOBLIB_NAME, MODEL_NAME
from pipeline.models.registry import SKLEARN_MODELS
from pipeline.plan.code_digest import code_digest
from pipeline.split.design import TRAIN, region_from_store
from pipeline.split.validation import (
    RUN_REGION_NAMES,
    VAL,
    region_class_counts,
    validation_region,
)
from pipeline.training.batches import WindowSource
from pipeline.training.data import TrainingData, channel_statistics, load_training_data
from pipeline.training.distributed import (
    SINGLE,
    World,
    check_batch_size,
    launched_world,
    process_group,
    threads_per_process,
)
from pipeline.training.loop import METRIC_COLUMNS, EpochCallback, fit, write_metrics
from pipeline.training.losses import balanced_alpha
from pipeline.training.model_config import model_config_for
from pipeline.training.options import TrainOptions, parse_train_options
from pipeline.training.relearning import relearning_features
from pipeline.training.windows import (
    SpatialSplit,
    patch_windows,
    pixel_windows,
    plan_patches,
    select_label_dates,
    window_ends,
)

log = logging.getLogger(__name__)

CARD_NAME = "model_card.json"
REGION_NAME = "training_region.tif"
GPU_RESIDENT_BYTES = 8 * 2**30


@dataclass(frozen=True)
class TrainResult:
    """``out_dir``; ``model_path`` (model.pt or model.joblib); ``best_epoch`` (1-based);
    ``metrics`` (the best epoch's row); ``epochs_run``; ``stopped_early``; ``completed``
    (False when ``on_epoch_end`` stopped it); ``options_hash``."""

    out_dir: Path
    model_path: Path
    best_epoch: int
    metrics: dict[str, Any]
    epochs_run: int
    stopped_early: bool
    completed: bool
    options_hash: str


def split_labels(data: TrainingData, region: np.ndarray, ends: np.ndarray,
                 options: TrainOptions) -> tuple[np.ndarray, np.ndarray]:
    """Training labels (TRAIN pixels of the run ``region``, kept dates) and validation labels (VAL
    pixels, all dates), both (T, H, W) int16, -1 = not used: test, buffer and validation pixels
    never reach a training loss at any date. Raises TrainingError without training labels."""
    labelled_dates = np.nonzero((data.labels >= 0).any(axis=(1, 2)))[0]
    kept = select_label_dates(labelled_dates, fraction=options.label_fraction, mode=options.label_removal, seed=options.seed)
    if kept.size < labelled_dates.size:
        log.info("label_fraction %.2f (%s): training labels of %d of %d labelled dates kept",
                 options.label_fraction, options.label_removal, kept.size, labelled_dates.size)
    train = np.full_like(data.labels, -1)
    in_train = region == TRAIN
    for t in kept:
        train[t] = np.where(in_train, data.labels[t], -1)
    val = np.where((region == VAL)[None], data.labels, -1).astype(np.int16)
    if not (train[ends] >= 0).any():
        raise TrainingError(
            f"no labelled pixel in the training region at any window end date (dates {int(ends[0])}..{int(ends[-1])} "
            f"of {len(data.times)}); add labels there, lower 'time_steps' or 'val_fraction', or lower "
            f"evaluation.test_share / evaluation.buffer"
        )
    return train, val


def run_region(data: TrainingData, design: np.ndarray, ends: np.ndarray, options: TrainOptions,
               block: int) -> tuple[np.ndarray, dict[str, dict[str, int]]]:
    """The run region (H, W) uint8: the test design ``design`` (TRAIN / TEST / BUFFER) with this
    run's validation blocks (VAL) drawn among its training pixels, and the labelled pixel-dates at
    the window ends per class and region. Raises TrainingError naming a class that has labels
    but no training pixel."""
    labels = data.labels[ends]
    region = validation_region(design, labels, block=options.block_size or block, share=options.val_fraction,
                               buffer=options.effective_buffer, seed=options.seed)
    names = [c.name for c in data.classes]
    counts = region_class_counts(labels, region, names)
    log.info("labelled pixel-dates per class (train / validation / test / buffer): %s",
             {n: tuple(v.values()) for n, v in counts.items()})
    starved = [n for n, v in counts.items() if sum(v.values()) > 0 and v["train"] == 0]
    if starved:
        raise TrainingError(
            f"class(es) {starved} have labels but no training pixel once the test blocks, their buffer and the "
            f"validation blocks are held out ({ {n: counts[n] for n in starved} }); lower evaluation.buffer (the ring "
            f"around the test blocks), evaluation.test_share or evaluation.block_size, change evaluation.seed, lower "
            f"train.val_fraction, or label more of those classes"
        )
    absent = [n for n, v in counts.items() if sum(v.values()) == 0]
    if absent:
        log.warning("class(es) %s have no label at any window end date: the model cannot learn them", absent)
    return region, counts


def _window_sources(data: TrainingData, split: SpatialSplit, ends: np.ndarray, train_labels: np.ndarray,
                    val_labels: np.ndarray, opts: TrainOptions, device: torch.device) -> tuple[WindowSource, WindowSource]:
    """The training and validation windows of a torch model, on ``device``: pixel windows for the
    pixel LSTM, else patch windows (training patches anywhere their labels or, for the
    semi-supervised model, their data are; validation patches scoring each validation pixel once)."""
    feats, usable = torch.from_numpy(data.features).to(device), torch.from_numpy(data.usable).to(device)
    tr_lab, va_lab = torch.from_numpy(train_labels).to(device), torch.from_numpy(val_labels).to(device)
    t = opts.time_steps
    if opts.model == "pixel_lstm":
        return (WindowSource(feats, tr_lab, usable, pixel_windows(ends, train_labels >= 0), time_steps=t, patch=None),
                WindowSource(feats, va_lab, usable, pixel_windows(ends, val_labels >= 0), time_steps=t, patch=None))
    keep = (train_labels >= 0) if opts.w_max == 0.0 else data.usable
    tw = patch_windows(split.train_origins, ends, keep, patch=split.patch)
    if not (tw.size and (train_labels >= 0).any()):
        raise TrainingError("no training patch holds a labelled pixel; lower 'patch' or 'buffer', or add labels")
    labelled = _rows_in(tw, patch_windows(split.train_origins, ends, train_labels >= 0, patch=split.patch))
    vw = patch_windows(split.val_origins, ends, val_labels >= 0, patch=split.patch)
    owned = torch.from_numpy(split.val_owned).to(device)
    return (WindowSource(feats, tr_lab, usable, tw, time_steps=t, patch=split.patch, labelled=labelled),
            WindowSource(feats, va_lab, usable, vw, time_steps=t, patch=split.patch, owned=owned))


def _rows_in(rows: np.ndarray, subset: np.ndarray) -> np.ndarray:
    """(N,) bool: which rows of ``rows`` (N, k) int64 also occur in ``subset`` (M, k) int64."""
    if not subset.size:
        return np.zeros(len(rows), dtype=bool)
    k = rows.shape[1]
    view = np.dtype([(f"c{i}", np.int64) for i in range(k)])
    return np.isin(np.ascontiguousarray(rows).view(view).ravel(), np.ascontiguousarray(subset).view(view).ravel())


def write_region(path: Path, region: np.ndarray, data: TrainingData) -> None:
    """The run region as a GeoTIFF on the data grid (uint8: 0 train, 1 test, 2 buffer, 3 validation;
    band description and tags name the codes), written atomically: which pixels' labels each
    loss could use, to check in a GIS."""
    import rasterio
    from affine import Affine

    profile = {"driver": "GTiff", "width": region.shape[1], "height": region.shape[0], "count": 1,
               "dtype": "uint8", "crs": data.crs, "transform": Affine(*data.transform[:6]), "compress": "deflate"}
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(region.astype(np.uint8), 1)
        dst.set_band_description(1, "training region")
        dst.update_tags(1, **{f"code_{code}": name for code, name in RUN_REGION_NAMES.items()})


def data_digest(data: TrainingData, region: np.ndarray | None = None) -> str:
    """sha256 of the training arrays (features, usable mask, labels), dates and run region.

    Stored in checkpoints so that a rerun after the features or labels changed (same shapes,
    other values) trains from scratch instead of resuming - or reusing - the old model.
    """
    h = hashlib.sha256()
    for arr in (data.features, data.usable, data.labels, np.asarray(data.times, dtype="datetime64[ns]")):
        h.update(f"{arr.dtype}{arr.shape};".encode())
        for t in range(arr.shape[0]):  # per date: bounded temporaries
            h.update(np.ascontiguousarray(arr[t]).view(np.uint8))
    if region is not None:
        h.update(np.ascontiguousarray(region, dtype=np.uint8).tobytes())
    return h.hexdigest()


def _card(options: TrainOptions, data: TrainingData, result: dict[str, Any], sources: Mapping[str, str] | None,
          device: torch.device, code: str) -> dict[str, Any]:
    return {
        "model": options.model,
        "classes": [c.to_config() for c in options.classes],
        "data": {**dict(sources or {}), "shape": dict(zip(("time", "channel", "y", "x"), data.shape, strict=True)),
                 "first_date": str(data.times[0])[:10], "last_date": str(data.times[-1])[:10], "crs": data.crs,
                 "transform": list(data.transform)},
        "options": options.to_dict(),
        "options_hash": options.digest(),
        **result,
        "software": {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
                     "code_digest": code},  # the training stage's code
    }


def train_model(
    features: xr.Dataset, labels: xr.Dataset, out_dir: str | os.PathLike[str],
    options: TrainOptions | Mapping[str, Any] | str, *, threads: int | None = None,
    sources: Mapping[str, str] | None = None, on_epoch_end: EpochCallback | None = None,
    base_model: str | os.PathLike[str] | None = None, fold: int | None = None,
) -> TrainResult:
    """Train ``options.model`` on ``features`` (features.zarr layout: ``features`` (time,
    channel, y, x) float16, NaN where missing) and ``labels`` (labels.zarr layout: ``labels``
    (time, y, x) uint8 class ids, 0 = unlabelled) on the same grid; write the model folder.

    Resumes from ``out_dir/checkpoint.pt`` when it matches the options, data and code.
    ``sources``: data paths recorded in the model card; ``threads``: CPU threads (torch and
    scikit-learn); ``on_epoch_end``: called with each epoch's ``metrics.csv`` row of a torch
    model, True stops the run there (:func:`pipeline.training.loop.fit`; rf/svm: not called).
    ``base_model``: first-stage model folder of a relearning model (default: the sibling
    folder ``options.base_name``); the features are then extended with its class
    probabilities (:mod:`pipeline.training.relearning`). ``fold``: train for spatial
    cross-validation fold ``fold`` of the labels' test design (its blocks are the test set)
    instead of the design's test blocks.

    Under ``torchrun`` (``WORLD_SIZE`` > 1, :mod:`pipeline.training.distributed`) the torch
    models train data-parallel (DDP, gloo on CPU, nccl on ``cuda:LOCAL_RANK``); ``threads`` is
    then shared by the processes of a machine and rank 0 writes the folder. rf/svm are
    trained by rank 0 alone (no process group); the other ranks return at once.
    """
    opts = parse_train_options(options)
    out = Path(out_dir)
    world = launched_world()
    if opts.model in SKLEARN_MODELS:
        if not world.is_main:
            log.info("%s is trained by rank 0 alone; rank %d has nothing to do", opts.model, world.rank)
            return TrainResult(out, out / JOBLIB_NAME, 0, {}, 0, False, False, opts.digest())
        return _train_model(features, labels, out, opts, device=torch.device("cpu"), threads=threads, sources=sources,
                            on_epoch_end=on_epoch_end, base_model=base_model, world=SINGLE, fold=fold)
    pixel = opts.model == "pixel_lstm"
    check_batch_size(opts.pixel_batch_size if pixel else opts.batch_size, world,
                     option="pixel_batch_size" if pixel else "batch_size")
    with process_group(resolve_device(opts.device), world) as (world, device):
        return _train_model(features, labels, out, opts, device=device, threads=threads_per_process(threads, world),
                            sources=sources, on_epoch_end=on_epoch_end, base_model=base_model, world=world,
                            fold=fold)


def _train_model(
    features: xr.Dataset, labels: xr.Dataset, out: Path, opts: TrainOptions, *, device: torch.device,
    threads: int | None, sources: Mapping[str, str] | None, on_epoch_end: EpochCallback | None,
    base_model: str | os.PathLike[str] | None, world: World, fold: int | None = None,
) -> TrainResult:
    """:func:`train_model` on ``device`` (this rank's under DDP, ``world``)."""
    out.mkdir(parents=True, exist_ok=True)
    configure_runtime(device, threads=threads)
    relearn: dict[str, Any] = {}
    if opts.relearning != "none":
        base = Path(base_model) if base_model is not None else base_model_dir(out, opts.base_name)
        if base.resolve() == out.resolve():
            raise ConfigError(f"train option 'relearning_base' names the output folder {out} itself; "
                              f"name the first-stage model folder")
        features, record = relearning_features(features, base, options=opts, device=device)
        relearn = {"relearning": record}
    data = load_training_data(features, labels, classes=opts.classes, use_valid_mask=opts.use_valid_mask,
                              time_steps=opts.time_steps)
    n_t, n_c, height, width = data.shape
    # the last date is the test date (the map is made for it): no training window ends there
    if opts.holdout_last_date and opts.time_steps > n_t - 1:
        lower = f"lower train option 'time_steps' to at most {n_t - 1}, or " if n_t > 1 else ""
        raise TrainingError(
            f"the features hold {n_t} dates but time_steps={opts.time_steps} needs at least {opts.time_steps + 1} "
            f"(one window of {opts.time_steps} dates plus the last date, held out for the map); {lower}get more "
            f"dates (widen the AOI dates, raise catalog.max_cloud_cover, lower cube.min_valid_fraction)"
        )
    ends = window_ends(n_t - 1 if opts.holdout_last_date else n_t, opts.time_steps)
    design, record = region_from_store(labels, fold=fold)
    region, counts = run_region(data, design, ends, opts, block=int(record["block_size"]))
    split = plan_patches(region, patch=opts.patch, stride=opts.stride)
    train_labels, val_labels = split_labels(data, region, ends, opts)
    design_facts = {"design": {k: v for k, v in record.items() if k != "class_pixels"}, "split_counts": counts}
    if world.is_main:
        write_region(out / REGION_NAME, region, data)
    mean, std = channel_statistics(data.features, data.usable)
    k = len(opts.classes)
    meta: dict[str, Any] = {"model_name": opts.model, "classes": [c.to_config() for c in opts.classes],
                            "time_steps": opts.time_steps, "data_signature": [n_t, n_c, height, width],
                            "data_digest": data_digest(data, region), "code_digest": code_digest("pipeline.train"),
                            **relearn}

    if opts.model in SKLEARN_MODELS:
        from pipeline.training.baselines import fit_baseline  # here: scikit-learn only for rf / svm

        m = fit_baseline(data.features, train_labels, val_labels, ends, options=opts, mean=mean, std=std, out_dir=out,
                         meta=meta, threads=threads)
        row = {c: float("nan") for c in METRIC_COLUMNS} | {"epoch": 1, "val_oa": m["val_oa"], "val_f1": m["val_f1"],
                                                            "seconds": m["seconds"]}
        write_metrics(out, [row])
        card = _card(opts, data, {"best_epoch": 1, "metrics": m, "epochs_run": 1, "stopped_early": False, **relearn,
                                  **design_facts}, sources, device, meta["code_digest"])
        write_text_atomic(out / "model_card.json", json.dumps(card, indent=2, default=str))
        return TrainResult(out, out / JOBLIB_NAME, 1, m, 1, False, True, opts.digest())

    seed_everything(opts.seed)
    config = model_config_for(opts.model, in_channels=n_c, num_classes=k, options=opts)
    meta["model_config"] = config
    model = build_model(opts.model, config)
    model.standardize.set_statistics(torch.from_numpy(mean), torch.from_numpy(std))  # type: ignore[operator,union-attr]
    model = prepare_model(model, device)
    data_dev = device if device.type == "cuda" and data.features.nbytes < GPU_RESIDENT_BYTES else torch.device("cpu")
    alpha = balanced_alpha(torch.from_numpy(np.bincount(train_labels[ends][train_labels[ends] >= 0], minlength=k)))
    alpha_used = alpha if opts.focal_alpha == "balanced" else None
    train_src, val_src = _window_sources(data, split, ends, train_labels, val_labels, opts, data_dev)
    if len(val_src) == 0 and opts.val_fraction > 0:
        log.warning("the validation blocks hold no labelled pixel; change 'seed' or 'block_size' for a useful split")
    log.info("%s on %s: %d training windows (%d with a label) / %d validation windows, t=%d, %d classes",
             opts.model, device, len(train_src), int(train_src.labelled.sum()), len(val_src), opts.time_steps, k)
    res = fit(model, train_src, val_src, options=opts, out_dir=out, device=device, alpha=alpha_used, meta=meta,
              on_epoch_end=on_epoch_end, world=world)
    if res.completed and world.is_main:
        card = _card(opts, data, {"best_epoch": res.best_epoch, "metrics": res.best_metrics, "epochs_run": res.epochs_run,
                                  "stopped_early": res.stopped_early, "class_alpha": alpha.tolist(), **relearn,
                                  **design_facts}, sources, device, meta["code_digest"])
        write_text_atomic(out / CARD_NAME, json.dumps(card, indent=2, default=str))
    return TrainResult(out, out / MODEL_NAME, res.best_epoch, res.best_metrics, res.epochs_run, res.stopped_early,
                       res.completed, opts.digest())
