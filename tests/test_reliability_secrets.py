"""Secrets never reach a file: Planetary Computer SAS tokens and subscription keys stay out of
logs, frozen items.json, the cube store and error messages.

The search never signs (hrefs are frozen unsigned); the cube stage signs each href at read
time through ``pipeline.raster.gdal_env.url_signer`` -> ``planetary_computer.sign``. Assets are
served on 127.0.0.1, which ``planetary_computer.sign`` leaves unsigned (only
``*.blob.core.windows.net`` URLs are signed), so the test wraps it: each loopback href is signed
through the *real* package as if it were a blob URL - the package fetches a (fake) SAS token
from a fake token endpoint on loopback (``PC_SDK_SAS_URL``), sending the fake subscription key
(``PC_SDK_SUBSCRIPTION_KEY``) - and the token's query string is appended to the loopback href.
The cube stage runs as a subprocess with its stderr in a log file, like under Snakemake.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import xarray as xr
from conftest import BAND_FILES, SCENE

from pipeline import search as search_stage
from pipeline.cli import redact_secrets

AOI = {"bbox": [-39.6, 72.0, -38.4, 72.5], "start": "2025-07-01", "end": "2025-07-31", "crs": "EPSG:32624"}
FAKE_KEY = "fake-subscription-key-7d1c0e3b9a"
FAKE_SIG = "FAKEsasSIGNATURE0123456789abcdef"
FAKE_TOKEN = f"st=2026-01-01T00%3A00%3A00Z&se=2099-01-01T00%3A00%3A00Z&sp=rl&sv=2024-05-04&sr=c&sig={FAKE_SIG}%3D"
SECRETS = (FAKE_KEY, FAKE_SIG)

# Runs the cube stage with planetary_computer.sign wrapped as described in the module docstring.
RUNNER = """
import sys
from urllib.parse import urlparse
import planetary_computer

real_sign = planetary_computer.sign

def loopback_sign(href):
    blob = "https://fakeaccount.blob.core.windows.net/landsat/" + urlparse(href).path.lstrip("/")
    signed = real_sign(blob)
    assert signed != blob, "the real package did not sign the blob URL"
    return href + "?" + urlparse(signed).query

planetary_computer.sign = loopback_sign
from pipeline.cube import main
raise SystemExit(main(sys.argv[1:]))
"""


class FakeSasEndpoint:
    """``GET /api/sas/v1/token/{account}/{container}`` answering a fake SAS token; records the
    subscription key header of every request."""

    def __init__(self) -> None:
        from werkzeug.serving import make_server
        from werkzeug.wrappers import Request, Response

        self.keys: list[str | None] = []
        expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

        @Request.application
        def app(request: Request) -> Response:
            self.keys.append(request.headers.get("Ocp-Apim-Subscription-Key"))
            if not request.path.startswith("/api/sas/v1/token/"):
                return Response("not found", status=404)
            return Response(json.dumps({"msft:expiry": expiry, "token": FAKE_TOKEN}), content_type="application/json")

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/api/sas/v1/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()


@pytest.fixture
def signed_setup(shared_dir: Path, real_scene_catalog, tmp_path: Path) -> Iterator[dict]:
    """Two real dates served on loopback (the second date's red band truncated, so a read error
    happens with a signed URL), a frozen items.json searched with signing on, the fake SAS endpoint."""
    root = tmp_path / "served"
    root.mkdir()
    for suffix in BAND_FILES.values():
        shutil.copy(shared_dir / "data" / "landsat-c2l2-scene" / f"{SCENE}_{suffix}.TIF", root)
    data = (root / f"{SCENE}_SR_B4.TIF").read_bytes()
    (root / "truncated_red.TIF").write_bytes(data[: len(data) // 3])
    folder, items, server = real_scene_catalog(tmp_path / "catalog", root=root)
    second = folder / "items" / f"{items[1]['id']}.json"
    item = json.loads(second.read_text())
    item["assets"]["red"]["href"] = f"{server.url}/truncated_red.TIF"
    second.write_text(json.dumps(item))
    queries: list[str] = []

    def record(path: str, environ: dict) -> None:
        queries.append(environ.get("QUERY_STRING", ""))

    server.fault = record
    sas = FakeSasEndpoint()
    yield {"catalog": folder, "items": items, "server": server, "queries": queries, "sas": sas}
    sas.close()


def catalog_options(folder: Path) -> dict:
    return {"url": str(folder), "platforms": [], "signing": "planetary_computer", "retries": 1, "backoff": 0}


def search(setup: dict, out: Path) -> int:
    return search_stage.main(["--name", "g", "--aoi", json.dumps(AOI), "--out", str(out),
                              "--options", json.dumps(catalog_options(setup["catalog"]))])


def assert_no_secret_in(path: Path) -> int:
    """Assert no secret in ``path`` (a file, or every file below a folder); return files checked."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for f in files:
        blob = f.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in blob, f"{secret} leaked into {f}"
    return len(files)


def test_search_never_signs_and_freezes_unsigned_hrefs(signed_setup: dict, tmp_path: Path, monkeypatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    import planetary_computer

    calls: list[object] = []
    monkeypatch.setattr(planetary_computer, "sign", lambda obj, *a, **k: calls.append(obj) or obj)
    monkeypatch.setattr(planetary_computer, "sign_inplace", lambda obj, *a, **k: calls.append(obj) or obj)
    monkeypatch.setenv("PC_SDK_SUBSCRIPTION_KEY", FAKE_KEY)
    out = tmp_path / "res" / "items.json"
    assert search(signed_setup, out) == 0
    assert calls == []  # nothing signed at search time
    frozen = json.loads(out.read_text())
    for feature, original in zip(frozen["features"], signed_setup["items"], strict=True):
        for key in BAND_FILES:
            href = feature["assets"][key]["href"]
            assert "?" not in href and href == json.loads(
                (signed_setup["catalog"] / "items" / f"{original['id']}.json").read_text())["assets"][key]["href"]
    assert_no_secret_in(out)
    assert not any(s in caplog.text for s in SECRETS)


@pytest.mark.parametrize("on_error", ["skip", "raise"])
def test_cube_signs_at_read_time_and_no_token_reaches_a_file(signed_setup: dict, tmp_path: Path,
                                                             on_error: str) -> None:
    items = tmp_path / "items.json"
    assert search(signed_setup, items) == 0
    out, log = tmp_path / "cube.zarr", tmp_path / "build_cube.log"
    env = {**os.environ, "PC_SDK_SUBSCRIPTION_KEY": FAKE_KEY, "PC_SDK_SAS_URL": signed_setup["sas"].url,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-c", RUNNER, "--items", str(items), "--name", "g", "--aoi", json.dumps(AOI),
           "--options", json.dumps({"resolution": 600, "anchor": "edge", "chunk": 256, "on_error": on_error}),
           "--catalog", json.dumps(catalog_options(signed_setup["catalog"])), "--out", str(out), "-v"]
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=300, check=False)
    text = log.read_text()
    # signing really happened, at read time, with the key sent to the token endpoint only
    assert signed_setup["sas"].keys and set(signed_setup["sas"].keys) == {FAKE_KEY}
    signed_reads = [q for q in signed_setup["queries"] if f"sig={FAKE_SIG}" in q]
    assert len(signed_reads) >= 8, signed_setup["queries"][:5]
    # the read error of the truncated asset was logged - without its signed URL
    assert "truncated_red.TIF" in text
    assert "?<redacted>" in text
    if on_error == "raise":
        assert proc.returncode == 2 and "cannot read the assets of 2025-07-11" in text, text[-2000:]
        assert not out.exists()
    else:
        assert proc.returncode == 0, text[-2000:]
        cube = xr.open_zarr(out)
        assert cube.sizes["time"] == 1 and "2025-07-11" in cube.attrs["skipped"][0]
        assert assert_no_secret_in(out) > 10
    assert_no_secret_in(log)
    assert_no_secret_in(items)
    assert not list(tmp_path.glob(".tmp-*"))


def test_redact_secrets(monkeypatch) -> None:
    monkeypatch.setenv("PC_SDK_SUBSCRIPTION_KEY", FAKE_KEY)
    signed = f"https://acct.blob.core.windows.net/c/LC09_SR_B4.TIF?{FAKE_TOKEN}"
    text = redact_secrets(f"'/vsicurl/{signed}' not recognized; key {FAKE_KEY}; token {FAKE_TOKEN}")
    assert not any(s in text for s in SECRETS)
    assert "https://acct.blob.core.windows.net/c/LC09_SR_B4.TIF?<redacted>" in text  # the asset stays named
    assert "sig=<redacted>" in text
    plain = "read http://127.0.0.1:8000/x.TIF failed: HTTP 404"
    assert redact_secrets(plain) == plain
