"""Options of the train stage (``--options '<json>'``) parsed into a frozen dataclass.

Every key has a documented default (see :class:`TrainOptions`); an unknown key, a wrong type
or an out-of-range value raises :class:`~pipeline.errors.ConfigError` naming the key and what
it accepts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from pipeline.errors import ConfigError
from pipeline.models.registry import MODEL_NAMES, ModelName, Relearning
from pipeline.reference.classes import ClassTable, LandCoverClass

SegmentMethod = Literal["felzenszwalb", "slic"]


DEFAULT_TIME_STEPS = 12


@dataclass(frozen=True)
class TrainOptions:
    """Train stage options (paper section 4.1 values as defaults where it gives them).

    model: "semi_convlstm" (ConvLSTM + consistency loss), "convlstm" (supervised, w = 0),
        "pixel_lstm" (per-pixel LSTM), "rf", "svm" (scikit-learn baselines), "unet" (UNet on
        the window's last date), "unet_stack" (UNet on the window's dates stacked as
        channels), "unet_convlstm" (shared UNet encoder per date, ConvLSTM at the bottleneck).
    classes: class table, list of {id, name, color} (:class:`~pipeline.reference.classes.LandCoverClass`,
        ids 1..254); required. Output index k <-> classes[k].
    time_steps: window length t in steps of the series (paper 20); null = the workflow sets the
        number of grid steps of the map's period (:func:`pipeline.timegrid.period.window_steps`),
        so the window covers the period; a stage given null without it uses 12. hidden: ConvLSTM units (128). lstm_hidden: pixel
        LSTM units (256). kernel: ConvLSTM kernel (3). patch/stride: training patches in pixels
        (128 / 64). epochs: maximum epochs. batch_size: patch windows per step.
        pixel_batch_size: pixels per step for pixel_lstm (1024).
    lr (1e-3, Adam), weight_decay (0), scheduler: "none" | "cosine" | "plateau".
    focal_gamma: focal modulation gamma (2.0); focal_alpha: "balanced" (per-class weight
        n / (K n_k) from the training labels, the paper's sigma) or null (1).
    loss_normalization: "batch" divides the supervised sum by the number of pixels with data
        in the minibatch (|B| of eq. (3), Pi-model) or "labelled" by the labelled ones.
    consistency_weight: w_max of the ramp-up (semi_convlstm only, must be > 0 there).
    consistency_scaling: "labelled_share" (default) multiplies the ramped weight by the share
        of labelled pixels among the pixels with data in the windows of the epoch, as the
        Pi-model's reference implementation scales w_max by M/N (labelled / all training
        inputs, Laine & Aila 2017), so that the consistency term cannot outweigh the
        supervised term of a few labelled pixels (eq. 3 divides that term by all pixels of
        the batch); "none" uses the ramped weight as is.
    rampup_epochs: epochs of the Gaussian ramp-up w_max * exp(-5 (1 - e/N)^2), w(0) = 0.
    dropout, noise_std (Gaussian input noise in units of each channel's std),
        temporal_jitter (probability that a step of the window is replaced by its predecessor):
        the stochastic perturbations of the two passes.
    val_fraction: share of the training blocks held out for validation (early stopping),
        stratified by class so every class keeps most of its labelled pixels for training
        (0 = no validation, monitor train loss). The test blocks of the AOI's test design
        (labels.zarr ``split``) are never used, at any date.
    block_size: validation block side in pixels (null = the test design's block size).
        buffer: training pixels closer than this to a validation block are not used
        (null = kernel // 2).
    patience: early-stopping patience in epochs; monitor: "val_f1" (default, weighted F1 of the
        validation pixels) | "val_oa" | "val_loss" (the focal, class-balanced loss drifts up as
        the model grows confident while its accuracy still rises: on a real Landsat 8 patch it
        picked epoch 1, w = 0, validation OA 0.69 against 0.80 five epochs later).
    seed; device: "auto" | "cpu" | "cuda".
    label_fraction: share of labelled dates kept for training (rounded down, at least 1);
        label_removal: "chronological" (drop the earliest dates first) | "random".
    holdout_last_date: never train on windows ending at the last date, which is the date the
        map is made for and evaluated on (the paper's test setting); on by default.
    use_valid_mask: also treat pixels flagged invalid (cloud/shadow per QA) as missing; off by
        default because cloud and shadow are classes of the paper.
    max_windows_per_epoch: cap on training windows holding a training label per epoch (null =
        all windows); pixel_lstm draws ``patch**2`` pixel windows per window of the cap. unlabelled_window_ratio (semi_convlstm only): with that cap, windows
        without any training label (consistency loss only) drawn per labelled window, so the
        semi-supervised model sees as many labelled windows as the supervised ones plus
        ``ratio`` times as many unlabelled ones.
    max_pixels_per_class, n_iter, cv_folds, search_space: rf/svm sampling and random search;
        search_space replaces lists of the paper's grid, e.g. {"n_estimators": [50, 100]}.
    unet_depth (3): pooling levels of the UNet models; unet_width (32): channels of their
        first level (doubled per level); unet_lstm_skips (false): unet_convlstm also runs a
        ConvLSTM on every skip connection (``kernel`` is the kernel of all their convolutions).
    relearning: post-classification relearning (relearning paper): "none", or the model is
        trained on the features extended with K channels of the first-stage class
        probabilities of ``relearning_base``, per pixel ("pixel") or averaged over image
        segments of each date ("object"); see :mod:`pipeline.training.relearning`.
    relearning_base: name of the first-stage model folder (a sibling of the output folder,
        results/{aoi}/models/{relearning_base}); null = ``model`` (the same model trained
        without relearning), see :attr:`TrainOptions.base_name`.
    segment_method ("felzenszwalb" | "slic"), segment_scale (felzenszwalb scale, 100),
        segment_size (felzenszwalb min_size / SLIC mean segment size in pixels, 30): the
        segmentation of the "object" strategy (:mod:`pipeline.objects.segments`).
    """

    classes: tuple[LandCoverClass, ...]
    model: ModelName = "semi_convlstm"
    time_steps: int | None = None
    hidden: int = 16
    lstm_hidden: int = 256
    kernel: int = 3
    patch: int = 64
    stride: int = 32
    epochs: int = 20
    batch_size: int = 4
    pixel_batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: Literal["none", "cosine", "plateau"] = "none"
    focal_gamma: float = 2.0
    focal_alpha: Literal["balanced"] | None = "balanced"
    loss_normalization: Literal["batch", "labelled"] = "batch"
    consistency_weight: float = 1.0  # w_max; 10 lost 8 OA points on real Sentinel-2 (bench/README.md)
    consistency_scaling: Literal["labelled_share", "none"] = "labelled_share"
    rampup_epochs: int = 5
    dropout: float = 0.3
    noise_std: float = 0.1
    temporal_jitter: float = 0.1
    val_fraction: float = 0.15
    block_size: int | None = None
    buffer: int | None = None
    patience: int = 5
    monitor: Literal["val_loss", "val_oa", "val_f1"] = "val_f1"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    label_fraction: float = 1.0
    label_removal: Literal["chronological", "random"] = "chronological"
    use_valid_mask: bool = False
    holdout_last_date: bool = True
    max_windows_per_epoch: int | None = 64
    unlabelled_window_ratio: float = 1.0
    max_pixels_per_class: int = 2000
    n_iter: int = 10
    cv_folds: int = 3
    search_space: Mapping[str, tuple[Any, ...]] | None = field(default=None)
    unet_depth: int = 3
    unet_width: int = 32
    unet_lstm_skips: bool = False
    relearning: Relearning = "none"
    relearning_base: str | None = None
    segment_method: SegmentMethod = "felzenszwalb"
    segment_scale: float = 100.0
    segment_size: int = 30

    def __post_init__(self) -> None:
        if self.time_steps is None:  # no period to cover is known here: the workflow resolves null first
            object.__setattr__(self, "time_steps", DEFAULT_TIME_STEPS)

    # ---- derived values -------------------------------------------------------------
    @property
    def effective_buffer(self) -> int:
        return self.buffer if self.buffer is not None else self.kernel // 2

    @property
    def base_name(self) -> str:
        """Folder name of the first-stage model of relearning: ``relearning_base`` or ``model``."""
        return self.relearning_base if self.relearning_base is not None else self.model

    @property
    def w_max(self) -> float:
        """Consistency weight actually used: 0 for every model but semi_convlstm."""
        return self.consistency_weight if self.model == "semi_convlstm" else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["classes"] = [c.to_config() for c in self.classes]
        if self.search_space is not None:
            d["search_space"] = {k: list(v) for k, v in self.search_space.items()}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def digest(self) -> str:
        """sha256 of the canonical JSON of every option (identifies a training run)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()


_INT_MIN = {
    "time_steps": 1, "hidden": 1, "lstm_hidden": 1, "kernel": 1, "patch": 1, "stride": 1,
    "epochs": 1, "batch_size": 1, "pixel_batch_size": 1, "rampup_epochs": 0, "patience": 1,
    "seed": 0, "max_pixels_per_class": 2, "n_iter": 1, "cv_folds": 2, "block_size": 1,
    "buffer": 0, "max_windows_per_epoch": 1, "unet_depth": 1, "unet_width": 1, "segment_size": 1,
}
_FLOAT_RANGE = {  # name -> (low, high, low_inclusive, high_inclusive)
    "lr": (0.0, 1.0, False, True), "weight_decay": (0.0, 1.0, True, True),
    "focal_gamma": (0.0, 10.0, True, True), "consistency_weight": (0.0, 1e6, True, True),
    "dropout": (0.0, 1.0, True, False), "noise_std": (0.0, 10.0, True, True),
    "temporal_jitter": (0.0, 1.0, True, False), "val_fraction": (0.0, 1.0, True, False),
    "label_fraction": (0.0, 1.0, False, True), "segment_scale": (0.0, 1e6, False, True),
    "unlabelled_window_ratio": (0.0, 1000.0, True, True),
}
_CHOICES = {
    "model": MODEL_NAMES, "scheduler": ("none", "cosine", "plateau"),
    "focal_alpha": ("balanced", None), "loss_normalization": ("batch", "labelled"),
    "monitor": ("val_loss", "val_oa", "val_f1"), "device": ("auto", "cpu", "cuda"),
    "label_removal": ("chronological", "random"), "relearning": get_args(Relearning),
    "segment_method": get_args(SegmentMethod), "consistency_scaling": ("labelled_share", "none"),
}
_NULLABLE = {"block_size", "buffer", "max_windows_per_epoch", "time_steps"}


def _parse_classes(value: object) -> tuple[LandCoverClass, ...]:
    """The class rows of the train option ``classes``, validated like the config's class table."""
    if isinstance(value, ClassTable):
        return value.classes
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError("train option 'classes' must be a non-empty list of {id, name, color}")
    rows = [row.to_config() if isinstance(row, LandCoverClass) else row for row in value]
    try:
        return ClassTable.from_config(rows).classes
    except ConfigError as exc:
        raise ConfigError(f"train option 'classes': {exc}") from exc


def _check_value(key: str, value: object) -> object:
    if value is None and key in _NULLABLE:
        return None
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise ConfigError(f"train option '{key}' = {value!r}; allowed: {list(_CHOICES[key])}")
        return value
    if key in _INT_MIN:
        if not isinstance(value, int) or isinstance(value, bool) or value < _INT_MIN[key]:
            raise ConfigError(f"train option '{key}' = {value!r}; expected an integer >= {_INT_MIN[key]}")
        return value
    if key in _FLOAT_RANGE:
        lo, hi, lo_inc, hi_inc = _FLOAT_RANGE[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            v = float(value)  # type: ignore[arg-type]
            ok = (v >= lo if lo_inc else v > lo) and (v <= hi if hi_inc else v < hi)
        if not ok:
            rng = f"{'[' if lo_inc else '('}{lo}, {hi}{']' if hi_inc else ')'}"
            raise ConfigError(f"train option '{key}' = {value!r}; expected a number in {rng}")
        return float(value)  # type: ignore[arg-type]
    if key in ("use_valid_mask", "holdout_last_date", "unet_lstm_skips"):
        if not isinstance(value, bool):
            raise ConfigError(f"train option '{key}' = {value!r}; expected true or false")
        return value
    if key == "relearning_base":
        if value is None:
            return None
        if not isinstance(value, str) or not value or "/" in value or "\\" in value or value in (".", ".."):
            raise ConfigError(f"train option 'relearning_base' = {value!r}; expected a model folder name such as 'unet'")
        return value
    if key == "search_space":
        if value is None:
            return None
        if not isinstance(value, Mapping) or not all(isinstance(v, list | tuple) and v for v in value.values()):
            raise ConfigError("train option 'search_space' must map parameter names to non-empty lists")
        return {str(k): tuple(v) for k, v in value.items()}
    raise ConfigError(f"train option '{key}' cannot be checked")  # pragma: no cover


def parse_train_options(raw: Mapping[str, object] | TrainOptions | str) -> TrainOptions:
    """Build :class:`TrainOptions` from a mapping or a JSON object string.

    Raises :class:`ConfigError` for invalid JSON, unknown keys and bad values.
    """
    if isinstance(raw, TrainOptions):
        return raw
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"train --options is not valid JSON ({exc}); pass one JSON object") from exc
    if not isinstance(raw, Mapping):
        raise ConfigError("train --options must be a JSON object of option names to values")
    names = [f.name for f in dataclasses.fields(TrainOptions)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"unknown train option(s) {unknown}; allowed: {sorted(names)}")
    if "classes" not in raw:
        raise ConfigError("train option 'classes' is required: the class table [{id, name, color}, ...]")
    kwargs: dict[str, Any] = {"classes": _parse_classes(raw["classes"])}
    for key, value in raw.items():
        if key != "classes":
            kwargs[key] = _check_value(key, value)
    opts = TrainOptions(**kwargs)
    if opts.kernel % 2 != 1:
        raise ConfigError(f"train option 'kernel' = {opts.kernel}; must be odd (3, 5, ...)")
    if opts.unet_depth > 6:
        raise ConfigError(f"train option 'unet_depth' = {opts.unet_depth}; allowed 1..6 (the grid shrinks by 2^depth)")
    if opts.model == "semi_convlstm" and opts.consistency_weight <= 0:
        raise ConfigError("train option 'consistency_weight' must be > 0 for semi_convlstm; use model 'convlstm' for w = 0")
    if opts.model != "semi_convlstm" and "consistency_weight" in raw and opts.consistency_weight > 0:
        raise ConfigError(
            f"train option 'consistency_weight' only applies to semi_convlstm, not {opts.model!r}; remove it or set 0"
        )
    return opts
