"""Prediction stage: seam-free tiled maps (identical whatever the tile size), COG outputs, and
clear errors when the model and the features disagree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
from conftest import with_test_design

from pipeline import predict as predict_stage
from pipeline.errors import PredictionError
from pipeline.inference.loading import load_model
from pipeline.inference.prediction import predict_date
from pipeline.models.receptive import receptive_radius
from pipeline.predict import PredictOptions, run_predict
from pipeline.raster.zarr_io import write_zarr_atomic
from pipeline.training.trainer import train_model

CLASSES = [{"id": 1, "name": "cultivated", "color": "#e6c34a"}, {"id": 2, "name": "forest", "color": "#1b7837"},
           {"id": 4, "name": "water", "color": "#2166ac"}]
ATTRS = {"crs": "EPSG:32649", "transform": [30.0, 0.0, 500000.0, 0.0, -30.0, 4500000.0]}


def dataset(n_times: int = 5, size: tuple[int, int] = (37, 45), seed: int = 0) -> tuple[xr.Dataset, xr.Dataset]:
    """Three classes in blobs with distinct stationary temporal curves; a cloud-free series."""
    rng = np.random.default_rng(seed)
    ny, nx = size
    yy, xx = np.mgrid[0:ny, 0:nx]
    cls = ((yy // 5) * 7 + (xx // 6) * 3) % 3
    t = np.arange(n_times)
    curves = np.stack([np.ones(n_times), (-1.0) ** t, -np.ones(n_times)])
    feats = np.stack([curves[(cls + c) % 3].transpose(2, 0, 1) for c in range(4)], axis=1).astype(np.float32)
    feats += rng.normal(0, 0.3, feats.shape).astype(np.float32)
    valid = np.ones((n_times, ny, nx), bool)
    valid[:, :3, :4] = False  # a corner never observed: nodata in the map
    coords = {"time": np.datetime64("2021-01-01", "ns") + np.arange(n_times) * np.timedelta64(16, "D"),
              "y": 4500000 - 15 - 30 * np.arange(ny), "x": 500015 + 30 * np.arange(nx)}
    f = xr.Dataset({"features": (("time", "channel", "y", "x"), feats.astype(np.float16)),
                    "valid": (("time", "y", "x"), valid)}, coords={**coords, "channel": np.arange(4)}, attrs=ATTRS)
    labels = np.broadcast_to(np.array([1, 2, 4], np.uint8)[cls], (n_times, ny, nx)).copy()
    return f, with_test_design(xr.Dataset({"labels": (("time", "y", "x"), labels)}, coords=coords, attrs=ATTRS), CLASSES)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, xr.Dataset]:
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("predict")
    f, lab = dataset()
    fz = write_zarr_atomic(f, tmp / "features.zarr")
    model_dir = tmp / "models" / "convlstm"
    train_model(f, lab, model_dir, {"classes": CLASSES, "model": "convlstm", "time_steps": 3, "hidden": 6,
                                    "patch": 12, "stride": 6, "epochs": 3, "val_fraction": 0.25, "block_size": 12,
                                    "buffer": 0, "device": "cpu", "lr": 0.01, "seed": 0})
    return fz, model_dir, lab


def test_receptive_radius() -> None:
    assert receptive_radius({"model": "convlstm", "time_steps": 20, "options": {"kernel": 3}}) == 21
    assert receptive_radius({"model": "semi_convlstm", "time_steps": 6, "options": {"kernel": 5}}) == 14
    assert receptive_radius({"model": "rf", "time_steps": 6, "options": {}}) == 0


def test_map_does_not_depend_on_the_tile_size(trained, tmp_path: Path) -> None:
    fz, model_dir, _ = trained
    features = xr.open_zarr(fz)
    model, meta = load_model(model_dir)
    last = features.sizes["time"] - 1
    full, count = predict_date(features, last, model, meta, tile=4096, workdir=tmp_path)
    for tile in (16, 23):
        tiled, _ = predict_date(features, last, model, meta, tile=tile, workdir=tmp_path)
        np.testing.assert_allclose(tiled, full, atol=2e-5, equal_nan=True)
    assert np.isnan(full[:, :3, :4]).all() and (count[:3, :4] == 0).all()
    assert np.isfinite(full[:, 3:, 4:]).all()
    np.testing.assert_allclose(full[:, 3:, 4:].sum(0), 1.0, atol=1e-5)


def test_stage_writes_the_map_folder(trained, tmp_path: Path) -> None:
    fz, model_dir, lab = trained
    out = tmp_path / "maps" / "convlstm"
    assert predict_stage.main(["--features", str(fz), "--model", str(model_dir), "--out", str(out),
                               "--name", "t", "--options", json.dumps({"tile": 16})]) == 0
    with rasterio.open(out / "classes.tif") as src:
        classes = src.read(1)
        assert src.crs.to_epsg() == 32649 and list(src.transform)[:6] == ATTRS["transform"]
    assert (classes[:3, :4] == 0).all()
    truth = lab["labels"].values[-1]
    assert (classes[3:, 4:] == truth[3:, 4:]).mean() > 0.8  # the held-out last date is mapped well
    with rasterio.open(out / "probabilities.tif") as src:
        probs = src.read()
        assert src.count == 3 and src.nodata == 255 and [d for d in src.descriptions] == ["cultivated", "forest", "water"]
    assert (probs[:, :3, :4] == 255).all()
    assert np.abs(probs[:, 3:, 4:].astype(int).sum(0) - 100).max() <= 2
    with rasterio.open(out / "valid_count.tif") as src:
        assert src.read(1)[10, 10] == 3  # t = 3 clear dates in the window
    item = json.loads((out / "item.json").read_text())
    assert item["properties"]["pipeline:model"] == "convlstm"


def test_every_date_option(trained, tmp_path: Path) -> None:
    fz, model_dir, _ = trained
    out = tmp_path / "all"
    run_predict(fz, model_dir, out, PredictOptions(tile=64, dates="all"), name="t")
    features = xr.open_zarr(fz)
    dated = sorted(p.name for p in out.iterdir() if p.is_dir())
    # windows of t = 3 end at dates 3 and 4; the last date's map is the folder itself
    assert dated == [str(features.time.values[2])[:10], str(features.time.values[3])[:10]]
    assert (out / "classes.tif").is_file() and (out / dated[0] / "classes.tif").is_file()


def test_channel_mismatch_is_a_clear_error(trained, tmp_path: Path) -> None:
    fz, model_dir, _ = trained
    f = xr.open_zarr(fz).load()
    other = write_zarr_atomic(f.isel(channel=slice(0, 3)), tmp_path / "other.zarr")
    with pytest.raises(PredictionError, match="expects 4 feature channels.*has 3"):
        run_predict(other, model_dir, tmp_path / "m", PredictOptions(), name="t")


def test_bad_options_exit_2(trained, tmp_path: Path) -> None:
    fz, model_dir, _ = trained
    for bad in ({"tile": 4}, {"dates": "first"}, {"tiles": 64}):
        assert predict_stage.main(["--features", str(fz), "--model", str(model_dir), "--out", str(tmp_path / "x"),
                                   "--options", json.dumps(bad)]) == 2
