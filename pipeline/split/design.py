"""The test design of an AOI: which labelled locations are test, buffer or training, for all models.

``spatial_blocks`` (default): the grid is cut into square blocks; a seeded, stratified share of
the blocks holding labels is the test set, never used for training or validation at any date;
training labels closer than ``buffer`` pixels (the models' receptive field) to a test block are
dropped too. Every labelled block also gets a cross-validation fold (``folds`` folds of blocks),
so spatial k-fold CV can use fold k as the test set instead.

``paper``: the Semi-LSTM paper's protocol: no location is held out; the map date is evaluated
on every reference pixel, locations the models trained on at other dates included.

The result is stored by the labels stage in ``labels.zarr`` (``split`` and ``fold``) and read by
the train and evaluate stages, so every model of an AOI sees the same split.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np

from pipeline.config import parse_options, reject_unknown
from pipeline.errors import ConfigError, LabelError
from pipeline.split.blocks import assign_folds, block_class_counts, block_index, draw_blocks, n_blocks, near

log = logging.getLogger(__name__)

DesignKind = Literal["spatial_blocks", "paper"]
TRAIN, TEST, BUFFER = 0, 1, 2
REGION_NAMES = {TRAIN: "train", TEST: "test", BUFFER: "buffer"}


@dataclass(frozen=True)
class DesignOptions:
    """The split keys of the ``evaluation`` config section, resolved for one AOI.

    design: ``"spatial_blocks"`` or ``"paper"``. block_size: block side in pixels (None =
    :func:`default_block_size`). test_share: share of the labelled blocks in the test set.
    buffer: pixels around the test blocks left out of training (None = ``receptive_field``, at
    most a quarter of the block side: the theoretical receptive field of a ConvLSTM over many
    steps or of a UNet reaches far beyond what the model uses, and a ring that wide around every
    test block leaves a small AOI without training pixels - measured on a real 64 px patch: a
    13 px ring kept 251 of 684 training labels and halved every model's accuracy). receptive_field: the models'
    receptive-field radius in pixels (:func:`auto_buffer`). folds: spatial CV folds. seed: seed
    of the draws. patch: the training patch side (sets the default block size).
    """

    design: DesignKind = "spatial_blocks"
    block_size: int | None = None
    test_share: float = 0.3
    buffer: int | None = None
    receptive_field: int = 0
    folds: int = 5
    seed: int = 0
    patch: int = 64

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> DesignOptions:
        """Validate the JSON object of the labels stage's ``--design`` option."""
        reject_unknown(raw, {f.name for f in fields(cls)}, section="evaluation")
        opts = cls(**raw)
        if opts.design not in ("spatial_blocks", "paper"):
            raise ConfigError(f"evaluation.design {opts.design!r} not allowed (allowed: spatial_blocks, paper)")
        if not 0.0 < float(opts.test_share) < 1.0:
            raise ConfigError(f"evaluation.test_share {opts.test_share} must lie in (0, 1), e.g. 0.3")
        if opts.block_size is not None and opts.block_size < 1:
            raise ConfigError(f"evaluation.block_size {opts.block_size} must be >= 1 (or null for the default)")
        if (opts.buffer is not None and opts.buffer < 0) or opts.receptive_field < 0 or opts.folds < 2:
            raise ConfigError(f"evaluation.buffer ({opts.buffer}) must be >= 0 and evaluation.folds ({opts.folds}) >= 2")
        return opts

    @classmethod
    def from_json(cls, text: str) -> DesignOptions:
        """Parse the stage's ``--design`` JSON text."""
        return cls.from_mapping(parse_options(text, what="the test design (--design)"))


def default_block_size(shape: tuple[int, int], patch: int) -> int:
    """Default block side: the training patch, but at most a quarter of the shorter grid side
    (so that a small AOI still holds a few blocks), at least 2 pixels."""
    return max(2, min(int(patch), min(shape) // 4))


@dataclass(frozen=True)
class SpatialDesign:
    """``region`` (H, W) uint8: TRAIN / TEST / BUFFER; ``fold`` (H, W) int8: CV fold of the
    pixel's block, -1 where the block holds no label; ``record``: what the design is (stored in
    the labels store's attrs and in every accuracy report)."""

    region: np.ndarray
    fold: np.ndarray
    record: dict[str, Any]


def class_region_counts(labels: np.ndarray, region: np.ndarray, names: Sequence[str],
                        regions: Mapping[int, str] = REGION_NAMES) -> dict[str, dict[str, int]]:
    """Labelled pixels (pixel-dates with leading dims) per class name and region name.

    ``labels``: (..., H, W) int class indices 0..K-1 of ``names``, negative = unlabelled;
    ``region``: (H, W) codes of ``regions`` (code -> name, in the order the result lists them)."""
    out = {name: dict.fromkeys(regions.values(), 0) for name in names}
    for layer in np.asarray(labels).reshape(-1, *region.shape):
        for code, rname in regions.items():
            sel = layer[(region == code) & (layer >= 0)]
            for k, n in enumerate(np.bincount(sel, minlength=len(names))[: len(names)]):
                out[names[k]][rname] += int(n)
    return out


def dominant_class(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """The class index each pixel holds most often over time, (H, W) int64, -1 = never labelled.

    ``labels``: (T, H, W) int class indices, negative = unlabelled."""
    counts = np.zeros((n_classes, *labels.shape[1:]), dtype=np.int32)
    for layer in labels:
        for k in range(n_classes):
            counts[k] += layer == k
    return np.where(counts.sum(0) > 0, counts.argmax(0), -1)


def build_design(labels: np.ndarray, names: Sequence[str], options: DesignOptions) -> SpatialDesign:
    """The design of an AOI from its reference labels.

    ``labels``: (T, H, W) int class indices 0..K-1 of ``names``, negative = unlabelled (the full
    reference, before any label scarcity). Raises :class:`LabelError` when the spatial design
    cannot hold out any block (fewer than two blocks hold labels).
    """
    shape = labels.shape[1:]
    block = options.block_size or default_block_size(shape, options.patch)
    buffer = options.buffer if options.buffer is not None else min(options.receptive_field, block // 4)
    blocks = block_index(shape, block)
    counts = block_class_counts(labels, blocks, len(names), n_blocks(shape, block))
    fold = assign_folds(counts, options.folds, seed=options.seed)[blocks].astype(np.int8)
    region = np.full(shape, TRAIN, dtype=np.uint8)
    test_blocks = np.zeros(0, dtype=np.int64)
    if options.design == "spatial_blocks":
        test_blocks = draw_blocks(counts, options.test_share, seed=options.seed)
        if test_blocks.size == 0:
            raise LabelError(
                f"the labels fill {int((counts.sum(1) > 0).sum())} block(s) of {block} x {block} px, so no spatial "
                f"test block can be held out; lower evaluation.block_size, label more of the AOI, or set "
                f"evaluation.design: paper (accuracy then includes training locations)"
            )
        test = np.isin(blocks, test_blocks)
        region[near(test, buffer)] = BUFFER
        region[test] = TEST
    dominant = dominant_class(labels, len(names))
    per_class = class_region_counts(dominant, region, names)
    record = {
        **asdict(options), "kind": options.design, "block_size": int(block),
        "buffer_px": int(buffer), "labelled_blocks": int((counts.sum(1) > 0).sum()),
        "test_blocks": int(test_blocks.size), "labelled_pixels": int((dominant >= 0).sum()),
        "test_pixels": int(((dominant >= 0) & (region == TEST)).sum()),
        "buffer_pixels": int(((dominant >= 0) & (region == BUFFER)).sum()), "class_pixels": per_class,
    }
    for key in ("design", "buffer"):
        record.pop(key)
    log.info("test design %s: %d of %d labelled blocks of %d px are test (%d labelled px), %d px buffer; "
             "labelled pixels per class (train/test/buffer): %s", options.design, record["test_blocks"],
             record["labelled_blocks"], block, record["test_pixels"], buffer,
             {n: tuple(v.values()) for n, v in per_class.items()})
    return SpatialDesign(region=region, fold=fold, record=record)


def fold_region(fold: np.ndarray, k: int, buffer: int) -> np.ndarray:
    """The TRAIN / TEST / BUFFER region (H, W) uint8 of CV fold ``k``: its blocks are the test
    set, the pixels within ``buffer`` of them the buffer. ``fold``: (H, W) int from the design."""
    if not (fold == k).any():
        present = sorted(int(v) for v in np.unique(fold) if v >= 0)
        raise LabelError(f"cross-validation fold {k} holds no block (folds {present}); lower evaluation.folds")
    test = fold == k
    region = np.full(fold.shape, TRAIN, dtype=np.uint8)
    region[near(test, buffer)] = BUFFER
    region[test] = TEST
    return region


def auto_buffer(model: str, train: Mapping[str, Any]) -> int:
    """``evaluation.buffer: null``: the receptive-field radius (px) of ``model`` (a model name,
    ``{model}_relearn_{strategy}`` included) trained with the ``train`` config section, plus the
    first-stage model's for relearning: the reach of a prediction into its neighbourhood."""
    from pipeline.models.receptive import receptive_radius  # torch: only when the buffer is automatic
    from pipeline.models.registry import split_model_name

    name, strategy = split_model_name(model)
    steps = int(train.get("time_steps", 20))
    radius = receptive_radius({"model": name, "time_steps": steps, "options": dict(train)})
    if strategy != "none":
        base = split_model_name(train.get("relearning_base") or name)[0]
        radius += receptive_radius({"model": base, "time_steps": steps, "options": dict(train)})
    return int(radius)


def region_from_store(labels: Any, *, fold: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The TRAIN / TEST / BUFFER region (H, W) uint8 and the design record of a labels store
    (an xarray Dataset of ``labels.zarr``): its ``split``, or with ``fold`` the region of that
    cross-validation fold (:func:`fold_region`, buffer of the design). Raises
    :class:`LabelError` for a store written before test designs existed."""
    if "split" not in labels or "fold" not in labels or "design" not in labels.attrs:
        raise LabelError("labels.zarr has no test design (variables split/fold, attrs design): it was built by an "
                         "older version; delete it and rerun the labels stage (snakemake rebuilds it)")
    record = dict(labels.attrs["design"])
    if fold is None:
        return np.asarray(labels["split"].values, dtype=np.uint8), {**record, "fold": None}
    if not 0 <= fold < int(record["folds"]):
        raise LabelError(f"cross-validation fold {fold} is not one of the {record['folds']} folds of the design "
                         f"(0..{int(record['folds']) - 1}); set evaluation.folds")
    region = fold_region(np.asarray(labels["fold"].values), fold, int(record["buffer_px"]))
    return region, {**record, "kind": "spatial_cv", "fold": int(fold)}
