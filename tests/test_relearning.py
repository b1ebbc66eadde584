"""Post-classification relearning: the extension channels are the first-stage probabilities
(channel C + k == probability of class k), per pixel or as segment means; training, prediction
(seam-free, equal to an independent computation) and the checks on the first-stage model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
import yaml
from conftest import with_test_design

from pipeline.errors import CheckpointError, ConfigError, TrainingError
from pipeline.inference.loading import load_model, predict_window
from pipeline.inference.prediction import predict_date
from pipeline.inference.relearning import extended_window, object_mean
from pipeline.models.registry import relearning_name, split_model_name
from pipeline.objects.segments import date_segments
from pipeline.predict import PredictOptions, run_predict
from pipeline.raster.zarr_io import write_zarr_atomic
from pipeline.training.options import parse_train_options
from pipeline.training.relearning import relearning_features
from pipeline.training.trainer import train_model

REPO = Path(__file__).resolve().parents[1]
CLASSES = [{"id": 1, "name": "crop", "color": "#e6c34a"}, {"id": 2, "name": "forest", "color": "#1b7837"},
           {"id": 4, "name": "water", "color": "#2166ac"}]
BASE = {"classes": CLASSES, "model": "unet", "time_steps": 2, "patch": 8, "stride": 8, "epochs": 2, "batch_size": 2,
        "val_fraction": 0.0, "buffer": 0, "device": "cpu", "unet_depth": 1, "unet_width": 4, "lr": 0.01}


def dataset(n_times: int = 6, size: tuple[int, int] = (19, 22)) -> tuple[xr.Dataset, xr.Dataset]:
    """Three classes in blobs with distinct temporal curves; band-named channels; EPSG:32649."""
    rng = np.random.default_rng(0)
    ny, nx = size
    yy, xx = np.mgrid[0:ny, 0:nx]
    cls = ((yy // 5) * 2 + (xx // 6)) % 3
    curves = np.stack([np.ones(n_times), (-1.0) ** np.arange(n_times), -np.ones(n_times)])
    feats = np.stack([curves[(cls + c) % 3].transpose(2, 0, 1) * (0.1 + 0.05 * c) for c in range(3)], axis=1)
    feats = feats + rng.normal(0, 0.02, feats.shape)
    coords = {"time": np.datetime64("2021-01-01", "ns") + np.arange(n_times) * np.timedelta64(16, "D"),
              "y": 4500000 - 15 - 30 * np.arange(ny), "x": 500015 + 30 * np.arange(nx)}
    attrs = {"crs": "EPSG:32649", "transform": [30.0, 0.0, 500000.0, 0.0, -30.0, 4500000.0]}
    f = xr.Dataset({"features": (("time", "channel", "y", "x"), feats.astype(np.float16)),
                    "valid": (("time", "y", "x"), np.ones((n_times, ny, nx), bool))},
                   coords={**coords, "channel": ["red", "nir08", "swir16"]}, attrs=attrs)
    labels = np.broadcast_to(np.array([1, 2, 4], np.uint8)[cls], (n_times, ny, nx)).copy()
    return f, with_test_design(xr.Dataset({"labels": (("time", "y", "x"), labels)}, coords=coords, attrs=attrs), CLASSES)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, xr.Dataset, xr.Dataset]:
    """A tiny first-stage UNet (t = 2) in results/models/unet."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("relearn")
    f, lab = dataset()
    train_model(f, lab, root / "models" / "unet", BASE)
    return root, f, lab


def _whole_image_probs(model_dir: Path, f: xr.Dataset, index: int) -> np.ndarray:
    model, meta = load_model(model_dir)
    t = meta["time_steps"]
    x = torch.from_numpy(f["features"].values[index + 1 - t : index + 1].astype(np.float32))[None]
    return predict_window(model, x)[0].numpy()


def test_model_names_round_trip() -> None:
    assert split_model_name("unet_convlstm_relearn_pixel") == ("unet_convlstm", "pixel")
    assert split_model_name("unet_relearn_object") == ("unet", "object")
    assert split_model_name("unet_stack") == ("unet_stack", "none")
    assert split_model_name("unet_relearn_other") == ("unet_relearn_other", "none")
    for m, s in (("convlstm", "pixel"), ("rf", "none")):
        assert split_model_name(relearning_name(m, s)) == (m, s)


def test_object_mean_against_loops() -> None:
    rng = np.random.default_rng(3)
    probs = rng.random((3, 7, 9)).astype(np.float32)
    seg = rng.integers(0, 5, (7, 9))
    got = object_mean(probs, seg)
    for s in range(1, 5):
        sel = seg == s
        for k in range(3):
            np.testing.assert_allclose(got[k][sel], probs[k][sel].mean(), rtol=1e-5)
    np.testing.assert_array_equal(got[:, seg == 0], probs[:, seg == 0])


@pytest.mark.parametrize("strategy", ["pixel", "object"])
def test_extension_channels_are_the_class_probabilities(trained, strategy: str) -> None:
    root, f, _ = trained
    opts = parse_train_options({**BASE, "relearning": strategy, "time_steps": 2})
    ext, record = relearning_features(f, root / "models" / "unet", options=opts)
    c, k = f.sizes["channel"], len(CLASSES)
    assert record["first_date_index"] == 1 and record["base_time_steps"] == 2 and record["channels"] == c + k
    assert list(ext["channel"].values[c:]) == ["relearn_p0_crop", "relearn_p1_forest", "relearn_p2_water"]
    np.testing.assert_array_equal(ext["time"].values, f["time"].values[1:])
    np.testing.assert_array_equal(ext["features"].values[:, :c], f["features"].values[1:])
    assert ext["features"].dtype == f["features"].dtype
    for index in range(1, f.sizes["time"]):
        probs = _whole_image_probs(root / "models" / "unet", f, index)  # independent, untiled
        if strategy == "object":
            seg = date_segments(f, index)
            assert 1 < seg.max() < seg.size
            for s in np.unique(seg):
                probs[:, seg == s] = probs[:, seg == s].mean(axis=1, keepdims=True)
        got = ext["features"].values[index - 1, c:].astype(np.float32)
        np.testing.assert_allclose(got, probs, atol=1e-3)  # float16 storage
        assert not np.allclose(got[0], got[1], atol=1e-2)  # the classes differ: the order matters


def test_train_and_predict_relearning_model(trained, tmp_path: Path) -> None:
    root, f, lab = trained
    out = root / "models" / "unet_relearn_pixel"
    res = train_model(f, lab, out, {**BASE, "relearning": "pixel", "time_steps": 3})
    assert res.completed
    card = json.loads((out / "model_card.json").read_text())
    assert card["relearning"]["base"] == "unet" and card["relearning"]["strategy"] == "pixel"
    assert card["options"]["relearning"] == "pixel" and card["data"]["shape"]["channel"] == 3 + 3
    assert card["data"]["shape"]["time"] == f.sizes["time"] - 1
    model, meta = load_model(out)
    assert meta["in_channels"] == 6 and meta["relearning"]["base_sha256"] == card["relearning"]["base_sha256"]

    # the map's probabilities == an independent whole-image computation
    base_model, base_meta = load_model(root / "models" / "unet")
    last = f.sizes["time"] - 1
    window = extended_window(f, last, 3, base_model, base_meta, record=meta["relearning"], classes=CLASSES,
                             workdir=tmp_path)
    tiled, _ = predict_date(window, 2, model, meta, tile=16, workdir=tmp_path)
    ext = [_whole_image_probs(root / "models" / "unet", f, i).astype(np.float16) for i in range(last - 2, last + 1)]
    x = np.concatenate([f["features"].values[last - 2 :], np.stack(ext)], axis=1).astype(np.float32)
    expected = predict_window(model, torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(tiled, expected, atol=1e-4)

    fz = write_zarr_atomic(f, tmp_path / "features.zarr")
    maps = tmp_path / "maps"
    run_predict(fz, out, maps, PredictOptions(tile=16, dates="all"), name="t")
    with rasterio.open(maps / "classes.tif") as ds:
        classes = ds.read(1)
    ids = np.array([1, 2, 4])[expected.argmax(0)]
    assert (classes == ids).mean() > 0.99  # ties at float precision aside
    first = sorted(p.name for p in maps.iterdir() if p.is_dir())
    assert len(first) == f.sizes["time"] - 1 - 3  # maps from date (t_b - 1) + (t - 1) = 3 on, last in maps/

    (root / "models" / "unet" / "model.pt").write_bytes((root / "models" / "unet" / "model.pt").read_bytes() + b"0")
    try:
        with pytest.raises(CheckpointError, match="changed since"):
            run_predict(fz, out, tmp_path / "maps2", PredictOptions(tile=16), name="t")
    finally:
        (root / "models" / "unet" / "model.pt").write_bytes((root / "models" / "unet" / "model.pt").read_bytes()[:-1])


def test_bad_relearning_setups(trained, tmp_path: Path) -> None:
    root, f, lab = trained
    with pytest.raises(ConfigError, match="does not exist"):
        train_model(f, lab, tmp_path / "unet_relearn_pixel", {**BASE, "relearning": "pixel"})
    with pytest.raises(ConfigError, match="same class table"):
        train_model(f, lab, root / "models" / "x_relearn_pixel",
                    {**BASE, "relearning": "pixel", "relearning_base": "unet", "classes": CLASSES[:2] + [
                        {"id": 3, "name": "built", "color": "#d6604d"}]})
    with pytest.raises(TrainingError, match="leaves 5 of 6 dates"):
        train_model(f, lab, root / "models" / "unet_relearn_object", {**BASE, "relearning": "object", "time_steps": 5})
    with pytest.raises(ConfigError, match="itself"):
        train_model(f, lab, root / "models" / "unet", {**BASE, "relearning": "pixel"})
    with pytest.raises(ConfigError, match="relearning"):
        parse_train_options({**BASE, "relearning": "segment"})
    with pytest.raises(ConfigError, match="relearning_base"):
        parse_train_options({**BASE, "relearning": "pixel", "relearning_base": "../unet"})


def test_workflow_wires_the_base_model(tmp_path: Path) -> None:
    """Dry run: {model}_relearn_{strategy} trains after, and on the card of, the base model."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["train"].update(model="unet_convlstm", relearning="object")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--cores", "1", "-n", "-p", "maps"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    log = proc.stdout + proc.stderr
    assert "results/demo/reports/unet_convlstm_relearn_object/accuracy.json" in log
    assert "input: results/demo/models/unet_convlstm/model_card.json, results/demo/features.zarr" in log
    relearn_cmd = next(line for line in log.splitlines() if "--out results/demo/models/unet_convlstm_relearn_object" in line)
    assert '"relearning": "object"' in relearn_cmd and '"model": "unet_convlstm"' in relearn_cmd
    base_cmd = next(line for line in log.splitlines() if "--out results/demo/models/unet_convlstm " in line)
    assert '"relearning": "none"' in base_cmd and "segment_scale" not in base_cmd
