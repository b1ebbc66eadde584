"""The cube and feature stages on a real dask.distributed LocalCluster (2 worker processes on
127.0.0.1) give results identical to the threaded run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xarray as xr

from pipeline import cube as cube_stage
from pipeline import features as features_stage
from pipeline import search as search_stage

AOI = {"bbox": [-39.6, 72.0, -38.4, 72.5], "start": "2025-07-01", "end": "2025-07-31", "crs": "EPSG:32624"}
CUBE = {"resolution": 600, "anchor": "edge", "chunk": 64}


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=40) as c:
        yield c


def test_cube_and_features_on_a_local_cluster(cluster, real_scene_catalog, tmp_path: Path, monkeypatch) -> None:
    catalog, _, _ = real_scene_catalog(tmp_path / "catalog")
    items = tmp_path / "items.json"
    assert search_stage.main(["--name", "g", "--aoi", json.dumps(AOI), "--out", str(items),
                              "--options", json.dumps({"url": str(catalog), "platforms": []})]) == 0
    args = ["--items", str(items), "--name", "g", "--aoi", json.dumps(AOI), "--options", json.dumps(CUBE)]
    assert cube_stage.main([*args, "--out", str(tmp_path / "threads.zarr"), "--threads", "2"]) == 0
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
    assert cube_stage.main([*args, "--out", str(tmp_path / "cluster.zarr")]) == 0
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
    a, b = xr.open_zarr(tmp_path / "threads.zarr"), xr.open_zarr(tmp_path / "cluster.zarr")
    xr.testing.assert_identical(a[["reflectance", "qa", "valid"]].load(), b[["reflectance", "qa", "valid"]].load())
    assert len(cluster.workers) == 2

    opts = json.dumps({"stem": "gabor", "chunk": 32, "pca_sample": 5000})
    assert features_stage.main(["--cube", str(tmp_path / "threads.zarr"), "--out", str(tmp_path / "f1.zarr"),
                                "--options", opts, "--threads", "2"]) == 0
    assert features_stage.main(["--cube", str(tmp_path / "threads.zarr"), "--out", str(tmp_path / "f2.zarr"),
                                "--options", opts, "--scheduler", cluster.scheduler_address]) == 0
    f1, f2 = xr.open_zarr(tmp_path / "f1.zarr"), xr.open_zarr(tmp_path / "f2.zarr")
    xr.testing.assert_identical(f1.features.load(), f2.features.load())
