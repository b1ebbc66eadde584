"""Post-classification relearning (relearning paper): a second model trained end to end on the
features extended with the class probabilities of a first-stage model.

Names and paths. Train options ``relearning: pixel | object`` and ``relearning_base: <name>``:
the first-stage model is the trained folder ``results/{aoi}/models/<name>`` (a sibling of the
output folder; the train stage's ``--base-model`` overrides it). In the workflow the model
wildcard ``<model>_relearn_<strategy>`` (e.g. ``unet_convlstm_relearn_pixel``) trains
``<model>`` on the features extended with the probabilities of ``train.relearning_base``
(default: the same ``<model>`` trained without relearning) into
``results/{aoi}/models/<model>_relearn_<strategy>/``; predict and evaluate use that folder
like any other (see :func:`pipeline.models.registry.split_model_name`).

Extended input: the first-stage probabilities as extra channels, built by
:mod:`pipeline.inference.relearning` (channel order, first date, dtype there) for training
(:func:`relearning_features`, here) and for prediction (its ``extended_window``) alike.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from pipeline.errors import TrainingError
from pipeline.inference.relearning import (
    date_extension,
    extend,
    load_base,
    model_file_sha256,
)
from pipeline.objects.options import SegmentOptions
from pipeline.training.options import TrainOptions

log = logging.getLogger(__name__)


def segment_options(opts: TrainOptions) -> SegmentOptions:
    """Segmentation settings of the "object" strategy from the train options."""
    return SegmentOptions(method=opts.segment_method, scale=opts.segment_scale, size=opts.segment_size)


def relearning_features(features: xr.Dataset, base_dir: Path, *, options: TrainOptions,
                        device: torch.device | None = None) -> tuple[xr.Dataset, dict[str, Any]]:
    """The extended features store for training a relearning model, and its record.

    ``features``: features.zarr layout (``features`` (time, channel, y, x), ``valid``).
    Returns a Dataset of the dates ``t_b - 1 ..`` with ``features`` (time, C + K, y, x) in
    memory (channel order: :mod:`pipeline.inference.relearning`) and the record saved with the model
    (``strategy``, ``base``, ``base_dir``, ``base_model``, ``base_time_steps``,
    ``base_sha256``, ``segments``, ``first_date_index``, ``channels``).
    """
    classes = [c.to_config() for c in options.classes]
    model, meta = load_base(base_dir, classes=classes, device=device)
    t_b, n_t = int(meta["time_steps"]), features.sizes["time"]
    first = t_b - 1
    needed = options.time_steps + (1 if options.holdout_last_date else 0)
    if n_t - first < needed:
        raise TrainingError(
            f"relearning on {base_dir.name} (t={t_b}) leaves {n_t - first} of {n_t} dates, fewer than the {needed} "
            f"that time_steps={options.time_steps} needs; lower 'time_steps' or the base model's, or add dates"
        )
    segs = segment_options(options)
    log.info("relearning (%s) on %s: first-stage probabilities of dates %d..%d", options.relearning, base_dir,
             first, n_t - 1)
    ext = np.stack([date_extension(features, i, model, meta, strategy=options.relearning, segments=segs)
                    for i in range(first, n_t)]).astype(features["features"].dtype)
    out = extend(features, slice(first, None), ext, classes)
    record = {"strategy": options.relearning, "base": base_dir.name, "base_dir": str(base_dir),
              "base_model": meta["model"], "base_time_steps": t_b, "base_sha256": model_file_sha256(base_dir),
              "segments": {"method": segs.method, "scale": segs.scale, "size": segs.size},
              "first_date_index": first, "channels": int(out.sizes["channel"])}
    return out.load(), record
