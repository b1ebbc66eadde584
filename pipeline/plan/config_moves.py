"""Where the config keys of the flat layout went, and the flat options the stages still read (stdlib only).

The config is grouped for its readers: science sections, ``runtime`` (devices, chunks, retries,
tile sizes), one ``segmentation`` and one ``voting`` block, model settings nested per family
under ``train``, label scarcity under ``labels.scarcity``, experiment lists per varied option.
The stages keep their flat ``--options`` (one dataclass per stage): :data:`MOVED_KEYS` is the one
table old dotted path -> new dotted path. :func:`moved_key_problems` turns an old key in a
config into an error naming its new place (no silent renames); :func:`flat_section` rebuilds a
stage's flat section from the grouped config (the section's own keys, then the moved ones in
table order).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

MOVED_KEYS: dict[str, str] = {
    # runtime settings (how and where it runs, not what it computes)
    "catalog.retries": "runtime.catalog.retries",
    "catalog.backoff": "runtime.catalog.backoff",
    "catalog.timeout": "runtime.catalog.timeout",
    "cube.chunk": "runtime.cube.chunk",
    "features.chunk": "runtime.features.chunk",
    "features.device": "runtime.features.device",
    "train.device": "runtime.train.device",
    "predict.tile": "runtime.predict.tile",
    "predict.device": "runtime.predict.device",
    "tiling.tile_size": "runtime.tiling.tile_size",
    "tiling.overlap": "runtime.tiling.overlap",
    # model hyper-parameters per family
    "train.hidden": "train.convlstm.hidden",
    "train.kernel": "train.convlstm.kernel",
    "train.consistency_weight": "train.convlstm.consistency_weight",
    "train.consistency_scaling": "train.convlstm.consistency_scaling",
    "train.rampup_epochs": "train.convlstm.rampup_epochs",
    "train.unlabelled_window_ratio": "train.convlstm.unlabelled_window_ratio",
    "train.lstm_hidden": "train.pixel_lstm.hidden",
    "train.pixel_batch_size": "train.pixel_lstm.batch_size",
    "train.unet_depth": "train.unet.depth",
    "train.unet_width": "train.unet.width",
    "train.unet_lstm_skips": "train.unet.lstm_skips",
    "train.search_space": "train.baselines.search_space",
    "train.n_iter": "train.baselines.n_iter",
    "train.cv_folds": "train.baselines.cv_folds",
    "train.max_pixels_per_class": "train.baselines.max_pixels_per_class",
    # label scarcity in one place
    "labels.pixel_fraction": "labels.scarcity.pixel_fraction",
    "labels.points_per_class": "labels.scarcity.points_per_class",
    "train.label_fraction": "labels.scarcity.date_fraction",
    "train.label_removal": "labels.scarcity.date_removal",
    # one segmentation (object relearning and voting), one voting block
    "train.segment_method": "segmentation.method",
    "train.segment_scale": "segmentation.scale",
    "train.segment_size": "segmentation.size",
    "predict.segment_method": "segmentation.method",
    "predict.segment_scale": "segmentation.scale",
    "predict.segment_size": "segmentation.size",
    "predict.voting": "voting.method",
    # experiment lists named after the option they vary
    "experiments.label_fractions": "experiments.label_fraction.values",
    "experiments.label_fraction_models": "experiments.label_fraction.models",
    "experiments.time_lengths": "experiments.time_steps.values",
    "experiments.time_length_models": "experiments.time_steps.models",
    "experiments.cloud_covers": "experiments.max_cloud_cover.values",
    "experiments.cloud_cover_models": "experiments.max_cloud_cover.models",
    "experiments.cloud_cover_source": "experiments.max_cloud_cover.source",
}

# Sections that moved as a whole (an empty one would otherwise only be an unknown key).
MOVED_SECTIONS: dict[str, str] = {"tiling": "runtime.tiling"}

# The flat sections the stages read (their options dataclasses), rebuilt by flat_section.
STAGE_SECTIONS = ("catalog", "cube", "features", "labels", "train", "predict")


def moved_key_problems(config: Mapping[str, Any]) -> Iterator[str]:
    """One line per key of ``config`` at an old place of :data:`MOVED_KEYS` or
    :data:`MOVED_SECTIONS` (before the schema validation, which would only call it unknown)."""
    for old, new in MOVED_SECTIONS.items():
        if old in config and not config[old]:
            yield f"config section {old} moved to {new}; edit config.yaml (and any --configfile)"
    for old, new in MOVED_KEYS.items():
        section, key = old.split(".", 1)
        value = config.get(section)
        if isinstance(value, Mapping) and key in value:
            yield (f"config key {old} moved to {new}; edit config.yaml (and any --configfile) "
                   f"(see the Configuration section of README.md)")


def dotted(config: Mapping[str, Any], path: str) -> Any:
    """The value at dotted ``path`` of a (defaults filled) config; KeyError when absent."""
    value: Any = config
    for part in path.split("."):
        value = value[part]
    return value


def grouped_keys(section: str) -> set[str]:
    """The keys of ``section`` that hold moved keys (``train.convlstm``, ``labels.scarcity``): not
    stage options themselves."""
    return {new.split(".")[1] for new in MOVED_KEYS.values() if new.startswith(f"{section}.")}


def flat_section(config: Mapping[str, Any], section: str) -> dict[str, Any]:
    """The flat options of stage section ``section`` (a key of :data:`STAGE_SECTIONS`) from the
    grouped, defaults-filled ``config``: its own keys in config order (without the blocks that
    hold moved keys), then every key that moved out of it, under its old name, in table order."""
    grouped = grouped_keys(section)
    flat = {k: v for k, v in (config.get(section) or {}).items() if k not in grouped}
    for old, new in MOVED_KEYS.items():
        old_section, key = old.split(".", 1)
        if old_section == section:
            flat[key] = dotted(config, new)
    return flat
