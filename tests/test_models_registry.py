"""The model registry is the one list of models: train options, the config schema, the Snakefile's
wildcard constraint, the figure labels and the receptive fields all agree with it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
import yaml

from pipeline.models.receptive import (
    aligned_tile,
    receptive_radius,
    tile_alignment,
    tile_halo,
)
from pipeline.models.registry import (
    MODEL_NAMES,
    MODEL_WILDCARD,
    MODELS,
    RELEARN_STRATEGIES,
    SEMI_SUPERVISED_MODELS,
    SKLEARN_MODELS,
    TIME_LENGTH_MODELS,
    TORCH_MODELS,
    UNET_MODELS,
    ModelName,
    display_label,
    models_of,
    relearning_name,
    short_label,
    split_model_name,
)
from pipeline.training.options import parse_train_options

REPO = Path(__file__).resolve().parents[1]
CLASSES = [{"id": 1, "name": "a", "color": "#ff0000"}, {"id": 2, "name": "b", "color": "#00ff00"}]
RELEARNED = [relearning_name(m, s) for m in MODEL_NAMES for s in RELEARN_STRATEGIES]
NOT_MODELS = ["", "cnn", "unet_", "unet_relearn_other", "rf_relearn_pixel_relearn_object", "semi_convlstm2"]


def schema_models() -> dict:
    return yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())["properties"]


def test_registry_is_importable_without_torch() -> None:
    code = "import pipeline.models.registry, sys; assert 'torch' not in sys.modules, 'torch loaded'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_names_and_derived_tuples() -> None:
    assert MODEL_NAMES == get_args(ModelName)
    assert set(TORCH_MODELS) | set(SKLEARN_MODELS) == set(MODEL_NAMES)
    assert not set(TORCH_MODELS) & set(SKLEARN_MODELS)
    assert SKLEARN_MODELS == ("rf", "svm") and SEMI_SUPERVISED_MODELS == ("semi_convlstm",)
    assert UNET_MODELS == ("unet", "unet_stack", "unet_convlstm")
    assert models_of("torch_convlstm") == ("semi_convlstm", "convlstm")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_resolves_in_train_options(name: str) -> None:
    opts = parse_train_options({"classes": CLASSES, "model": name})
    assert opts.model == name
    assert (opts.w_max > 0) == MODELS[name].semi_supervised  # the consistency term: semi-supervised only


def test_unknown_model_is_rejected_by_train_options() -> None:
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="allowed"):
        parse_train_options({"classes": CLASSES, "model": "cnn"})


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_has_display_labels(name: str) -> None:
    assert display_label(name) and short_label(name)
    assert display_label(relearning_name(name, "pixel")) == relearning_name(name, "pixel")  # shown as named


def test_labels_of_the_paper_models() -> None:
    assert [display_label(m) for m in ("rf", "svm", "pixel_lstm", "convlstm", "semi_convlstm")] == [
        "RF", "SVM", "LSTM (pixel)", "ConvLSTM", "Semi-ConvLSTM"]
    assert short_label("pixel_lstm") == "LSTM"


def test_relearning_names_round_trip() -> None:
    for name in RELEARNED:
        model, strategy = split_model_name(name)
        assert model in MODEL_NAMES and strategy in RELEARN_STRATEGIES
        assert relearning_name(model, strategy) == name
    assert split_model_name("unet") == ("unet", "none")


def test_schema_train_model_enum_is_the_registry() -> None:
    assert schema_models()["train"]["properties"]["model"]["enum"] == list(MODEL_NAMES)


def _pattern_alternatives(pattern: str) -> tuple[list[str], list[str]]:
    m = re.fullmatch(r"\^\(([\w|]+)\)\(_relearn_\(([\w|]+)\)\)\?\$", pattern)
    assert m, f"unexpected model name pattern {pattern!r}"
    return m.group(1).split("|"), m.group(2).split("|")


@pytest.mark.parametrize("key", ["models", "label_fraction.models", "max_cloud_cover.models"])
def test_schema_experiment_patterns_are_the_registry(key: str) -> None:
    node = schema_models()["experiments"]
    for part in key.split("."):
        node = node["properties"][part]
    pattern = node["items"]["pattern"]
    models, strategies = _pattern_alternatives(pattern)
    assert models == list(MODEL_NAMES) and strategies == list(RELEARN_STRATEGIES)
    for name in (*MODEL_NAMES, *RELEARNED):
        assert re.search(pattern, name), name
    for name in NOT_MODELS:
        assert not re.search(pattern, name), name


def test_schema_time_length_models_are_the_registry() -> None:
    enum = schema_models()["experiments"]["properties"]["time_steps"]["properties"]["models"]["items"]["enum"]
    assert enum == list(TIME_LENGTH_MODELS)


def test_snakefile_constraint_is_the_registry() -> None:
    text = (REPO / "Snakefile").read_text()
    assert "from pipeline.models.registry import MODEL_WILDCARD" in text
    block = re.search(r"^wildcard_constraints:\n((?:    .*\n)+)", text, re.MULTILINE)
    assert block and re.search(r"^    model=MODEL_WILDCARD,", block.group(1), re.MULTILINE)
    for name in (*MODEL_NAMES, *RELEARNED):
        assert re.fullmatch(MODEL_WILDCARD, name), name
    for name in NOT_MODELS:
        assert not re.fullmatch(MODEL_WILDCARD, name), name


def test_receptive_radius_by_hand() -> None:
    # ConvLSTM (k // 2) (t + 1): k = 5, t = 6 -> 2 * 7 = 14 (both ConvLSTM models)
    for name in models_of("torch_convlstm"):
        meta = {"model": name, "time_steps": 6, "options": {"kernel": 5}}
        assert receptive_radius(meta) == 14 and tile_alignment(meta) == 1 and tile_halo(meta) == 14
    # plain UNet, n convs of kernel k (h = k // 2), depth d: n h (3 2^d - 2) + 2^d - 1
    # d = 2, k = 3, n = 2: 2 * 1 * (12 - 2) + 4 - 1 = 23; alignment 2^2 = 4, halo 24, tile 30 -> 32
    for name in ("unet", "unet_stack"):
        meta = {"model": name, "time_steps": 4, "options": {"unet_depth": 2, "kernel": 3}}
        assert receptive_radius(meta) == 23 and tile_alignment(meta) == 4
        assert tile_halo(meta) == 24 and aligned_tile(30, meta) == 32
    # UNet-ConvLSTM d = 3, k = 3, n = 2, t = 6, no skip LSTMs: the plain UNet's 2 (3 8 - 2) + 8 - 1 = 51
    # plus the bottleneck ConvLSTM's t (k // 2) 2^d = 6 * 1 * 8 = 48 -> 99; halo: 99 up to a multiple of 8 = 104
    meta = {"model": "unet_convlstm", "time_steps": 6, "options": {"unet_depth": 3, "kernel": 3}}
    assert receptive_radius(meta) == 99 and tile_alignment(meta) == 8 and tile_halo(meta) == 104


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_receptive_rule_of_every_model(name: str) -> None:
    meta = {"model": name, "time_steps": 3, "options": {"kernel": 3, "unet_depth": 1}}
    radius = receptive_radius(meta)
    if MODELS[name].receptive_rule == "pixel":  # per-pixel models: nothing around the pixel counts
        assert radius == 0 and tile_halo(meta) == 0
    else:
        assert radius > 0
    assert tile_alignment(meta) == (2 if MODELS[name].pooled else 1)
