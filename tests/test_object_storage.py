"""Stores on object storage: the cube and feature stages write to and read from an S3-compatible
server (moto in server mode on 127.0.0.1, credentials and endpoint from the environment as in
production) with results identical to the same stages on local paths; a store on the bucket
missing one object is refused."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import pytest
import xarray as xr

from pipeline import cube as cube_stage
from pipeline import features as features_stage
from pipeline import search as search_stage
from pipeline.errors import PipelineError
from pipeline.raster.object_store import is_url, store_path
from pipeline.raster.zarr_io import MANIFEST_NAME, open_store, store_problem

AOI = {"bbox": [-39.6, 72.0, -38.4, 72.5], "start": "2025-07-01", "end": "2025-07-31", "crs": "EPSG:32624"}
CUBE = {"resolution": 600, "anchor": "edge", "chunk": 128}
FEATURES = {"stem": "gabor", "chunk": 32, "pca_sample": 5000}
BUCKET = "landcover"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "pipeline-test-key", "AWS_SECRET_ACCESS_KEY": "pipeline-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def s3(monkeypatch):
    """An empty bucket on a moto S3 server on 127.0.0.1 (free port); the environment points
    s3fs at it. Yields (s3fs filesystem, endpoint URL)."""
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    requests_log = logging.getLogger("werkzeug")  # one line per S3 request otherwise
    level = requests_log.level
    requests_log.setLevel(logging.WARNING)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    fs.mkdir(BUCKET)
    try:
        yield fs, endpoint
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()
        requests_log.setLevel(level)


def local_files(store: Path) -> dict[str, bytes]:
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def bucket_files(fs, prefix: str) -> dict[str, bytes]:
    fs.invalidate_cache()
    return {key[len(prefix) + 1:]: body for key, body in fs.cat(fs.find(prefix)).items()}


@pytest.mark.parametrize(("text", "url"), [("s3://bucket/run/cube.zarr", True), ("memory://x.zarr", True),
                                           ("results/demo/cube.zarr", False), ("/abs/cube.zarr", False),
                                           ("C:/data/cube.zarr", False)])
def test_urls_stay_strings_and_paths_become_paths(text: str, url: bool) -> None:
    assert is_url(text) is url
    assert store_path(text) == (text if url else Path(text))
    assert not is_url(Path(text.replace("://", "/")))


def test_cube_and_features_on_s3_equal_local_runs(s3, real_scene_catalog, tmp_path: Path, monkeypatch) -> None:
    fs, endpoint = s3
    staging = tmp_path / "tmpdir"  # $TMPDIR: where the cube stage stages a cube bound for a URL
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    catalog, _, _ = real_scene_catalog(tmp_path / "catalog")
    items = tmp_path / "items.json"
    assert search_stage.main(["--name", "g", "--aoi", json.dumps(AOI), "--out", str(items),
                              "--options", json.dumps({"url": str(catalog), "platforms": []})]) == 0
    args = ["--items", str(items), "--name", "g", "--aoi", json.dumps(AOI), "--options", json.dumps(CUBE)]
    cube_url, features_url = f"s3://{BUCKET}/run/cube.zarr", f"s3://{BUCKET}/run/features.zarr"

    assert cube_stage.main([*args, "--out", str(tmp_path / "cube.zarr")]) == 0
    assert cube_stage.main([*args, "--out", cube_url]) == 0
    features = ["--options", json.dumps(FEATURES), "--threads", "2"]
    assert features_stage.main(["--cube", str(tmp_path / "cube.zarr"), "--out", str(tmp_path / "features.zarr"),
                                *features]) == 0
    assert features_stage.main(["--cube", cube_url, "--out", features_url, *features]) == 0
    assert not list(staging.iterdir()), "the S3 runs must leave no staging store behind"

    # read back with plain xarray + s3fs, credentials given explicitly rather than by the pipeline
    options = {"endpoint_url": endpoint, "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
               "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}
    for name, url in (("cube.zarr", cube_url), ("features.zarr", features_url)):
        local = xr.open_zarr(tmp_path / name).load()
        remote = xr.open_zarr(url, storage_options=options).load()
        xr.testing.assert_identical(local, remote)
        # bit for bit: every object on the bucket is the file of the local store, manifest included
        stored = bucket_files(fs, f"{BUCKET}/run/{name}")
        assert MANIFEST_NAME in stored
        assert stored == local_files(tmp_path / name)
        manifest = json.loads(stored[MANIFEST_NAME])
        data = [v for k, v in stored.items() if k != MANIFEST_NAME]
        assert manifest == {"files": len(data), "bytes": sum(map(len, data))}
        assert store_problem(url) is None
    assert int(remote["features"].notnull().sum()) > 0  # the features are not all missing

    # an object deleted on the bucket: refused with the fix; a rerun replaces the store in place
    # (no rename on S3: the old objects, a stray one included, are deleted first, the manifest written last)
    chunk = sorted(k for k in fs.find(f"{BUCKET}/run/features.zarr/features") if not k.endswith("zarr.json"))[1]
    fs.rm_file(chunk)
    assert "files" in (store_problem(features_url) or "")
    with pytest.raises(PipelineError, match=r"features\.zarr is incomplete: it holds .*delete it and rerun"):
        open_store(features_url, required=("features",))
    fs.pipe_file(f"{BUCKET}/run/features.zarr/stray-object", b"left by another tool")
    assert features_stage.main(["--cube", cube_url, "--out", features_url, *features]) == 0
    assert bucket_files(fs, f"{BUCKET}/run/features.zarr") == local_files(tmp_path / "features.zarr")

    # an incomplete input on the bucket stops the next stage (exit status 2) before it touches its output
    fs.rm_file(min(k for k in fs.find(f"{BUCKET}/run/cube.zarr/reflectance") if not k.endswith("zarr.json")))
    assert features_stage.main(["--cube", cube_url, "--out", features_url, *features]) == 2
    assert store_problem(features_url) is None
    with pytest.raises(PipelineError, match="does not exist"):
        open_store(f"s3://{BUCKET}/run/nothing.zarr")
