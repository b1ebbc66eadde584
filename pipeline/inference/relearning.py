"""Relearning inputs: the class probabilities of a first-stage model as extra feature channels.

A relearning model (:mod:`pipeline.training.relearning`) is trained and predicts on the
features extended with the softmax of a first-stage model. For date ``tau`` the extension is
the base model's softmax for the window of its ``t_b`` dates ending at ``tau`` (tiled
prediction with the base model's exact halo): "pixel" keeps it per pixel, "object" replaces it
by its mean over the image segment of ``tau`` that holds the pixel (:mod:`pipeline.objects.segments`,
options ``segment_*``). Channel order of the extended features: the C feature channels, then K
channels ``relearn_p{k}_{name}`` where channel ``C + k`` is the probability of class ``k`` of
the class table (the same table for both models). Dates before ``t_b - 1`` have no first-stage
prediction: the extended series starts at date ``t_b - 1`` (training windows and maps need
``t_b - 1`` more dates). The extension has the dtype of the features store (float16 by
default) in training and prediction alike.

The first-stage model is the sibling folder ``results/{aoi}/models/<base>`` of the relearning
model (:func:`base_model_dir`), pinned by the sha256 of its weights (:func:`check_base`).
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import torch
import xarray as xr

from pipeline.errors import CheckpointError, ConfigError, TrainingError
from pipeline.inference.loading import load_model, predict_window
from pipeline.models.files import JOBLIB_NAME, MODEL_NAME
from pipeline.models.receptive import aligned_tile, tile_halo
from pipeline.objects.options import SegmentOptions
from pipeline.objects.segments import date_segments
from pipeline.tiling.predict import predict_tiled

BASE_TILE = 256


def base_model_dir(out_dir: str | Path, base: str) -> Path:
    """The first-stage model folder: ``<out_dir>/../<base>``."""
    return Path(out_dir).parent / base


def model_file_sha256(model_dir: Path) -> str:
    """sha256 of the weights file of a trained folder (model.pt or model.joblib)."""
    for name in (MODEL_NAME, JOBLIB_NAME):
        if (model_dir / name).exists():
            return hashlib.sha256((model_dir / name).read_bytes()).hexdigest()
    raise CheckpointError(f"no {MODEL_NAME} or {JOBLIB_NAME} in {model_dir}; train the first-stage model first")


def load_base(base_dir: Path, *, classes: list[dict[str, Any]], device: torch.device | None = None) -> tuple[Any, dict[str, Any]]:
    """Load the first-stage model of ``base_dir`` (on ``device`` for torch models) and check
    that its class table has the ids of ``classes`` in the same order (ConfigError otherwise)."""
    if not base_dir.is_dir():
        raise ConfigError(f"first-stage model folder {base_dir} does not exist; train it first "
                          f"(or fix train option 'relearning_base')")
    model, meta = load_model(base_dir)
    base_ids, ids = [int(c["id"]) for c in meta["classes"]], [int(c["id"]) for c in classes]
    if base_ids != ids:
        raise ConfigError(f"first-stage model {base_dir} has classes {base_ids}, the relearning model {ids}; "
                          f"train both with the same class table")
    if device is not None and isinstance(model, torch.nn.Module):
        model.to(device)
    return model, meta


def base_probabilities(features: xr.Dataset, index: int, model: Any, meta: dict[str, Any], *,
                       tile: int = BASE_TILE) -> np.ndarray:
    """First-stage softmax (K, y, x) float32 of the window of ``t_b`` dates ending at date
    ``index`` of ``features`` (``features`` (time, channel, y, x), NaN = missing), predicted
    tile by tile with the base model's exact halo (identical to a whole-image prediction)."""
    t = int(meta["time_steps"])
    if index + 1 < t:
        raise TrainingError(f"date {index} has fewer than the {t} dates the first-stage model needs")
    image = features["features"].isel(time=slice(index + 1 - t, index + 1)).data

    def fn(block: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))[None]
        return predict_window(model, x)[0].float().cpu().numpy()

    return predict_tiled(image, fn, tile=aligned_tile(tile, meta), halo=tile_halo(meta)).astype(np.float32)


def object_mean(probabilities: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Mean of ``probabilities`` (K, y, x) float over each segment of ``segments`` (y, x) int
    (labels > 0); pixels of label 0 keep their own values. Returns (K, y, x) float32."""
    seg = np.asarray(segments, dtype=np.int64)
    inside = seg > 0
    n = int(seg.max(initial=0)) + 1
    counts = np.maximum(np.bincount(seg[inside], minlength=n), 1)
    out = np.array(probabilities, dtype=np.float32, copy=True)
    for k in range(out.shape[0]):
        means = np.bincount(seg[inside], weights=out[k][inside].astype(np.float64), minlength=n) / counts
        out[k][inside] = means[seg[inside]]
    return out


def date_extension(features: xr.Dataset, index: int, model: Any, meta: dict[str, Any], *, strategy: str,
                   segments: SegmentOptions, tile: int = BASE_TILE) -> np.ndarray:
    """The K extension channels (K, y, x) float32 of date ``index``: the first-stage
    probabilities ("pixel") or their means over the date's segments ("object")."""
    probs = base_probabilities(features, index, model, meta, tile=tile)
    if strategy == "pixel":
        return probs
    if strategy == "object":
        return object_mean(probs, date_segments(features, index, options=segments))
    raise ConfigError(f"relearning strategy {strategy!r} not allowed (allowed: pixel, object)")


def extension_names(classes: list[dict[str, Any]]) -> list[str]:
    """Channel names of the extension, ``relearn_p{k}_{name}`` in class table order."""
    return [f"relearn_p{k}_{c['name']}" for k, c in enumerate(classes)]


def extend(features: xr.Dataset, times: slice, ext: Any, classes: list[dict[str, Any]]) -> xr.Dataset:
    """The dates ``times`` of ``features`` with ``features`` (time, C + K, y, x): the C feature
    channels, then the K extension channels ``ext`` (time, K, y, x) cast to the features' dtype
    and named by :func:`extension_names`."""
    part = features.isel(time=times)
    fv = part["features"]
    names = [str(v) for v in part["channel"].values] if "channel" in part.coords else [str(i) for i in range(fv.sizes["channel"])]
    fv = fv.assign_coords(channel=np.array(names, dtype=object))
    ev = xr.DataArray(ext, dims=("time", "channel", "y", "x"),
                      coords={"time": part["time"], "channel": np.array(extension_names(classes), dtype=object),
                              "y": part["y"], "x": part["x"]})
    out = part.drop_vars("features").drop_vars("channel", errors="ignore")
    out["features"] = xr.concat([fv, ev.astype(fv.dtype)], dim="channel")
    return out


def check_base(model_dir: Path, record: dict[str, Any], base_dir: Path | None = None) -> Path:
    """The first-stage folder of a trained relearning model (``base_dir`` or the sibling named
    in ``record``), after checking its weights are those it was trained with."""
    base = base_dir if base_dir is not None else base_model_dir(model_dir, record["base"])
    if model_file_sha256(base) != record["base_sha256"]:
        raise CheckpointError(
            f"first-stage model {base} changed since relearning model {model_dir} was trained on it; retrain "
            f"{model_dir.name} (snakemake does so when the first-stage model is rebuilt)"
        )
    return base


def extended_window(features: xr.Dataset, index: int, time_steps: int, model: Any, meta: dict[str, Any], *,
                    record: dict[str, Any], classes: list[dict[str, Any]], workdir: Path,
                    cache: MutableMapping[int, np.ndarray] | None = None, tile: int = BASE_TILE) -> xr.Dataset:
    """The extended features (and ``valid``) of the window of ``time_steps`` dates ending at
    date ``index`` for predicting with a relearning model: ``features`` (t, C + K, y, x) lazy
    (dask), the extensions of each date written once to disk-backed arrays in ``workdir``
    (``cache`` maps date index -> array, to reuse them across maps)."""
    first = index + 1 - time_steps
    if first < int(record["first_date_index"]):
        raise TrainingError(f"date {index} is too early for this relearning model: its window needs first-stage "
                            f"probabilities from date {first}, available from date {record['first_date_index']}")
    cache = {} if cache is None else cache
    segs = SegmentOptions(**record["segments"])
    for i in range(first, index + 1):
        if i not in cache:
            ext = date_extension(features, i, model, meta, strategy=record["strategy"], segments=segs, tile=tile)
            arr = np.lib.format.open_memmap(workdir / f"relearn_{i}.npy", mode="w+", dtype=features["features"].dtype,
                                            shape=ext.shape)
            arr[:] = ext
            cache[i] = arr
    ext_stack = da.stack([da.from_array(cache[i], chunks=(-1, 512, 512)) for i in range(first, index + 1)])
    return extend(features, slice(first, index + 1), ext_stack, classes)
