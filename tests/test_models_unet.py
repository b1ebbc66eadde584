"""UNet, UNet (stacked dates) and UNet-ConvLSTM: shapes on odd sizes, padding semantics,
temporal dependence, the receptive-field formula against autograd, seam-free tiled prediction
with the computed halo, and the train/load round trip by model name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from conftest import with_test_design

from pipeline.errors import ConfigError
from pipeline.inference.loading import load_model, predict_window
from pipeline.models.receptive import (
    aligned_tile,
    receptive_radius,
    tile_alignment,
    tile_halo,
)
from pipeline.models.unet import UNetClassifier, UNetConfig
from pipeline.models.unet_convlstm import UNetConvLSTMClassifier, UNetConvLSTMConfig
from pipeline.models.unet_parts import aligned_halo, unet_receptive_radius
from pipeline.tiling.predict import predict_tiled
from pipeline.training.options import TrainOptions, parse_train_options
from pipeline.training.trainer import train_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _models() -> list[tuple[str, torch.nn.Module]]:
    return [
        ("unet", UNetClassifier(UNetConfig(4, 3, depth=2, width=4))),
        ("unet_stack", UNetClassifier(UNetConfig(4, 3, temporal="stack", time_steps=3, depth=2, width=4))),
        ("unet_convlstm", UNetConvLSTMClassifier(UNetConvLSTMConfig(4, 3, depth=2, width=4))),
        ("unet_convlstm_skips", UNetConvLSTMClassifier(UNetConvLSTMConfig(4, 3, depth=2, width=4, lstm_skips=True))),
    ]


@pytest.mark.parametrize("size", [(13, 21), (16, 16), (1, 7)])
def test_shapes_on_odd_sizes(size: tuple[int, int]) -> None:
    x = torch.randn(2, 3, 4, *size)
    for name, model in _models():
        model.eval()
        y = model(x)
        assert y.shape == (2, 3, *size), name
        assert torch.isfinite(y).all(), name


def test_padding_is_zero_after_standardisation() -> None:
    """Odd input == multiple-of-4 input padded with the channel means, cropped back."""
    cfg = UNetConfig(2, 3, depth=2, width=4)
    model = UNetClassifier(cfg).eval()
    mean, std = torch.tensor([0.5, -1.0]), torch.tensor([2.0, 3.0])
    model.standardize.set_statistics(mean, std)
    x = torch.randn(1, 1, 2, 13, 10) * 2
    padded = mean.view(1, 1, 2, 1, 1).expand(1, 1, 2, 16, 12).clone()
    padded[..., :13, :10] = x
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(padded)[..., :13, :10], atol=1e-6, rtol=0)


def test_nan_inputs_are_masked() -> None:
    model = UNetConvLSTMClassifier(UNetConvLSTMConfig(2, 3, depth=1, width=4)).eval()
    x = torch.randn(1, 2, 2, 8, 8)
    x_nan = x.clone()
    x_nan[0, 0, :, 2, 3] = float("nan")
    x_zero = x.clone()
    x_zero[0, 0, :, 2, 3] = 0.0  # the channel mean (statistics 0 / 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x_nan), model(x_zero))


def _randomize(module: torch.nn.Module, std: float = 0.3) -> None:
    """Weights far from the (shrinking) default initialisation, as after training."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


def test_temporal_dependence() -> None:
    x = torch.randn(1, 3, 4, 12, 12)
    x2 = x.clone()
    x2[:, 0] += 1.0  # change the earliest date only
    with torch.no_grad():
        for name, model in _models():
            _randomize(model)
            model.eval()
            diff = (model(x) - model(x2)).abs().max().item()
            if name == "unet":  # last date only
                assert diff == 0.0
            else:
                assert diff > 1e-6, name  # float noise is ~1e-8 here


def test_unet_stack_rejects_other_window_lengths() -> None:
    model = UNetClassifier(UNetConfig(4, 3, temporal="stack", time_steps=3, depth=1, width=4))
    with pytest.raises(ValueError, match="exactly 3 dates"):
        model(torch.randn(1, 2, 4, 8, 8))
    with pytest.raises(ValueError, match="expected"):
        model(torch.randn(1, 3, 5, 8, 8))


def test_radius_formula_closed_form() -> None:
    for depth in range(1, 5):
        for k, n in ((3, 2), (5, 2), (3, 1)):
            h = k // 2
            assert unet_receptive_radius(depth, k, convs=n) == n * h * (3 * 2**depth - 2) + 2**depth - 1
    assert aligned_halo(51, 3) == 56 and aligned_halo(48, 3) == 48


def _empirical_radius(model: torch.nn.Module, t: int, size: int, pixels: range) -> int:
    """Largest Chebyshev distance from output pixel p of an input pixel with a non-zero gradient."""
    model.eval()
    radius = 0
    for p in pixels:
        x = torch.randn(1, t, 2, size, size, requires_grad=True)
        model(x)[0, :, p, p].sum().backward()
        assert x.grad is not None
        ys, xs = torch.nonzero(x.grad.abs().sum((0, 1, 2)), as_tuple=True)
        radius = max(radius, int((ys - p).abs().max()), int((xs - p).abs().max()))
    return radius


def test_radius_matches_autograd_support() -> None:
    """The formula is the exact receptive field (not only an upper bound) of random models."""
    cfg = UNetConfig(2, 3, depth=2, width=8)
    assert _empirical_radius(UNetClassifier(cfg), 1, 64, range(24, 28)) == cfg.receptive_radius == 23
    for skips in (False, True):
        ccfg = UNetConvLSTMConfig(2, 3, depth=2, width=8, lstm_skips=skips)
        got = _empirical_radius(UNetConvLSTMClassifier(ccfg), 3, 96, range(44, 48))
        assert got == ccfg.receptive_radius(3) == 35


def test_receptive_from_metadata() -> None:
    meta = {"model": "unet_convlstm", "time_steps": 6, "options": {"kernel": 3, "unet_depth": 3}}
    assert receptive_radius(meta) == unet_receptive_radius(3, 3, bottleneck_steps=6) == 51 + 6 * 8
    assert tile_alignment(meta) == 8 and tile_halo(meta) == 104 and aligned_tile(100, meta) == 104
    cfg = UNetConvLSTMConfig(4, 3, depth=2, width=4, lstm_skips=True, lstm_kernel=5)
    meta2 = {"model": "unet_convlstm", "time_steps": 4, "options": {}, "model_config": cfg.to_dict()}
    assert receptive_radius(meta2) == cfg.receptive_radius(4)
    assert receptive_radius({"model": "unet_stack", "time_steps": 4, "options": {"unet_depth": 2}}) == 23
    # other models unchanged: ConvLSTM bound, per-pixel 0, no alignment
    assert receptive_radius({"model": "convlstm", "time_steps": 20, "options": {"kernel": 3}}) == 21
    assert tile_alignment({"model": "convlstm", "time_steps": 20, "options": {}}) == 1
    assert tile_halo({"model": "rf", "time_steps": 3, "options": {}}) == 0


@pytest.mark.parametrize("name", ["unet", "unet_stack", "unet_convlstm"])
def test_tiled_prediction_is_seam_free(name: str) -> None:
    model = dict(_models())[name].eval()
    cfg = model.config  # type: ignore[union-attr]
    meta = {"model": name, "time_steps": 3, "options": {}, "model_config": cfg.to_dict()}
    image = np.random.default_rng(1).normal(size=(3, 4, 61, 67)).astype(np.float32)

    def fn(block: np.ndarray) -> np.ndarray:
        return predict_window(model, torch.from_numpy(np.ascontiguousarray(block))[None])[0].numpy()

    full = fn(image)
    halo = tile_halo(meta)
    for tile in (16, 18, 27):
        tiled = predict_tiled(image, fn, tile=aligned_tile(tile, meta), halo=halo)
        np.testing.assert_allclose(tiled, full, atol=1e-5, rtol=0)
    # the test can fail: tiles not aligned on 2^depth or without a halo leave seams
    assert np.abs(predict_tiled(image, fn, tile=18, halo=halo) - full).max() > 1e-3
    assert np.abs(predict_tiled(image, fn, tile=16, halo=0) - full).max() > 1e-3


CLASSES = [{"id": 1, "name": "a", "color": "#e6c34a"}, {"id": 2, "name": "b", "color": "#1b7837"}]


def tiny_dataset(n_times: int = 4, size: int = 16) -> tuple[xr.Dataset, xr.Dataset]:
    """Two classes in 4 px stripes with opposite temporal curves, EPSG:32649 30 m grid."""
    rng = np.random.default_rng(0)
    cls = (np.arange(size)[:, None] // 4 + np.zeros(size, int)[None]) % 2
    curve = np.where(np.arange(n_times) % 2 == 0, 1.0, -1.0)
    feats = (np.where(cls == 0, 1.0, -1.0)[None, None] * curve[:, None, None, None]
             * np.array([1.0, 0.5, -0.5])[None, :, None, None])
    feats = feats + rng.normal(0, 0.2, (n_times, 3, size, size))
    coords = {"time": np.datetime64("2021-01-01", "ns") + np.arange(n_times) * np.timedelta64(16, "D"),
              "y": 4500000 - 15 - 30 * np.arange(size), "x": 500015 + 30 * np.arange(size)}
    attrs = {"crs": "EPSG:32649", "transform": [30.0, 0.0, 500000.0, 0.0, -30.0, 4500000.0]}
    f = xr.Dataset({"features": (("time", "channel", "y", "x"), feats.astype(np.float16)),
                    "valid": (("time", "y", "x"), np.ones((n_times, size, size), bool))},
                   coords={**coords, "channel": ["red", "nir08", "swir16"]}, attrs=attrs)
    labels = np.broadcast_to((cls + 1).astype(np.uint8), (n_times, size, size)).copy()
    return f, with_test_design(xr.Dataset({"labels": (("time", "y", "x"), labels)}, coords=coords, attrs=attrs), CLASSES)


def test_train_and_load_by_name(tmp_path: Path) -> None:
    f, lab = tiny_dataset()
    for name in ("unet", "unet_stack", "unet_convlstm"):
        opts = {"classes": CLASSES, "model": name, "time_steps": 2, "patch": 8, "stride": 8, "epochs": 1,
                "batch_size": 2, "val_fraction": 0.0, "buffer": 0, "device": "cpu", "unet_depth": 2,
                "unet_width": 4, "unet_lstm_skips": name == "unet_convlstm"}
        res = train_model(f, lab, tmp_path / name, opts)
        assert res.completed
        model, meta = load_model(tmp_path / name)
        expected = UNetConvLSTMClassifier if name == "unet_convlstm" else UNetClassifier
        assert isinstance(model, expected) and meta["model"] == name
        assert meta["model_config"]["depth"] == 2 and meta["model_config"]["width"] == 4
        assert receptive_radius(meta) == (31 if name == "unet_convlstm" else 23)  # t = 2, skips on
        x = torch.from_numpy(f["features"].values[-2:].astype(np.float32))[None]
        probs = predict_window(model, x)
        torch.testing.assert_close(probs.sum(1), torch.ones(1, 16, 16), atol=1e-5, rtol=0)


def test_options_validation() -> None:
    ok = parse_train_options({"classes": CLASSES, "model": "unet_convlstm", "unet_depth": 4, "unet_width": 8,
                              "unet_lstm_skips": True})
    assert (ok.unet_depth, ok.unet_width, ok.unet_lstm_skips) == (4, 8, True)
    for bad, key in (({"unet_depth": 0}, "unet_depth"), ({"unet_depth": 7}, "unet_depth"),
                     ({"unet_width": 0}, "unet_width"), ({"unet_lstm_skips": 1}, "unet_lstm_skips"),
                     ({"model": "unet3"}, "model")):
        with pytest.raises(ConfigError, match=key):
            parse_train_options({"classes": CLASSES, **bad})


def test_schema_train_section_matches_options() -> None:
    """Every train key of the schema (the per-family blocks and the keys moved to other sections
    through pipeline.plan.config_moves) is a TrainOptions field with the same default; the model
    enum lists exactly the model names."""
    from pipeline.plan.config_moves import MOVED_KEYS, grouped_keys

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    props = schema["properties"]["train"]["properties"]
    fields = {f.name: f.default for f in TrainOptions.__dataclass_fields__.values()}

    def schema_default(path: str) -> object:
        node = schema
        for part in path.split("."):
            node = node["properties"][part]
        return node["default"]

    for key in ("unet_depth", "unet_width", "unet_lstm_skips", "segment_method", "segment_scale", "segment_size"):
        assert f"train.{key}" in MOVED_KEYS, key
        assert schema_default(MOVED_KEYS[f"train.{key}"]) == fields[key], key
    assert "relearning" in props and "relearning_base" in props
    for key, sub in props.items():
        if key in grouped_keys("train"):
            continue
        assert key in fields, f"schema train.{key} is no TrainOptions field"
        assert sub["default"] == fields[key], key
    for old, new in MOVED_KEYS.items():
        if old.startswith("train."):
            assert schema_default(new) == fields[old.split(".", 1)[1]], old
    from typing import get_args

    from pipeline.training.options import ModelName

    assert sorted(props["model"]["enum"]) == sorted(get_args(ModelName))
