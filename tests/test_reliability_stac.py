"""Reliability of the search stage against a STAC API that times out or drops connections.

A fault-injecting proxy on 127.0.0.1 sits in front of a real STAC API (rustac serving real
Planetary Computer items): the first N requests (optionally only those to one path) are
answered by closing the connection without a response, or by hanging past the client's
timeout. Within the retry budget the search succeeds with the same items as a direct search;
past it the stage stops with a clear error and writes no items.json.
(5xx retries and an API that is down are covered in tests/test_search.py.)
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

import pytest
import requests

from pipeline import search as search_stage
from pipeline.errors import EmptySearchError
from pipeline.stac.aoi import aoi_from_config
from pipeline.stac.search import CatalogOptions, search_items
from pipeline.stac.server import serve_folder

AOI = {"bbox": [-39.6, 72.0, -38.4, 72.5], "start": "2025-07-01", "end": "2025-07-31", "crs": "EPSG:32624"}


class FaultyProxy:
    """HTTP proxy to ``upstream`` whose first ``faults`` requests (to a path starting with
    ``only``, if given) fail: ``drop`` closes the connection without an answer, ``hang`` sends
    nothing for ``hang_s`` seconds and then closes it."""

    def __init__(self, upstream: str, *, faults: int, mode: Literal["drop", "hang"], only: str | None = None,
                 hang_s: float = 1.5) -> None:
        proxy = self
        self.calls: list[str] = []  # every request, in order
        self.failed = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _fail(self) -> bool:
                with proxy._lock:
                    proxy.calls.append(f"{self.command} {self.path}")
                    hit = (only is None or self.path.startswith(only)) and proxy.failed < faults
                    proxy.failed += hit
                return hit

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self._fail():
                    if mode == "hang":
                        time.sleep(hang_s)
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                up = requests.request(self.command, upstream + self.path, data=body, timeout=30,
                                      headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
                data = up.content.replace(upstream.encode(), proxy.url.encode())
                self.send_response(up.status_code)
                self.send_header("Content-Type", up.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = handle_one

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def api(real_scene_catalog, tmp_path: Path):
    """A real STAC API (rustac) over three real items; yields its URL and the item ids."""
    folder, items, _ = real_scene_catalog(tmp_path / "catalog", n_items=3, cloud_cover=[5.0, 20.0, 30.0])
    with serve_folder(folder) as url:
        yield url, sorted(i["id"] for i in items)


def search(tmp_path: Path, url: str, **options: object) -> tuple[int, Path]:
    out = tmp_path / "res" / "items.json"
    opts = {"url": url, "platforms": [], "backoff": 0, **options}
    code = search_stage.main(["--name", "greenland", "--aoi", json.dumps(AOI), "--out", str(out),
                              "--options", json.dumps(opts)])
    return code, out


def frozen_ids(path: Path) -> list[str]:
    return sorted(f["id"] for f in json.loads(path.read_text())["features"])


@pytest.mark.parametrize(("mode", "only"), [("drop", None), ("drop", "/search"), ("hang", None)])
def test_faults_within_the_retry_budget_are_retried(api, tmp_path: Path, mode: str, only: str | None) -> None:
    url, ids = api
    proxy = FaultyProxy(url, faults=2, mode=mode, only=only)  # type: ignore[arg-type]
    try:
        code, out = search(tmp_path, proxy.url, retries=3, timeout=0.5)
    finally:
        proxy.close()
    assert code == 0 and frozen_ids(out) == ids
    assert proxy.failed == 2
    # the failed request was repeated until it got through: twice refused, then answered
    failed_request = proxy.calls[0] if only is None else next(c for c in proxy.calls if c.startswith(f"POST {only}"))
    first = proxy.calls.index(failed_request)
    assert proxy.calls[first:first + 3] == [failed_request] * 3
    frozen = json.loads(out.read_text())
    assert frozen["features"][0]["assets"]["red"]["href"].startswith("http://127.0.0.1")  # hrefs untouched


@pytest.mark.parametrize(("mode", "only", "message"), [
    ("drop", None, "cannot open the STAC API"),
    ("hang", None, "cannot open the STAC API"),
    ("drop", "/search", "failed after 2 retries"),
])
def test_faults_past_the_retry_budget_are_a_clear_error_and_write_nothing(
        api, tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str, only: str | None, message: str) -> None:
    url, _ = api
    proxy = FaultyProxy(url, faults=1000, mode=mode, only=only, hang_s=1.0)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    try:
        code, out = search(tmp_path, proxy.url, retries=2, timeout=0.4)
    finally:
        proxy.close()
    assert code == 2
    assert proxy.failed == 3  # first try + 2 retries, then it gave up (no endless loop)
    assert time.perf_counter() - t0 < 20
    assert not out.exists()
    assert not out.parent.exists() or not list(out.parent.iterdir())  # no partial or temporary file
    assert message in caplog.text and "catalog.retries" in caplog.text
    assert proxy.url in caplog.text  # names the API


def test_the_timeout_holds_for_opening_the_api_and_for_searching(api, tmp_path: Path) -> None:
    """runtime.catalog.timeout bounds every request: an API that accepts the connection and then
    says nothing for 5 s fails after 2 tries of 0.3 s each, not after 2 x 5 s (pystac-client's
    Client.open resets a StacApiIO's timeout to its own argument)."""
    url, _ = api
    for only in (None, "/search"):
        proxy = FaultyProxy(url, faults=1000, mode="hang", only=only, hang_s=5.0)
        t0 = time.perf_counter()
        try:
            code, _ = search(tmp_path / str(only).strip("/"), proxy.url, retries=1, timeout=0.3)
        finally:
            proxy.close()
        elapsed = time.perf_counter() - t0
        assert code == 2 and proxy.failed == 2, only
        assert elapsed < 5.0, f"{only}: {elapsed:.1f} s: the 0.3 s timeout did not hold"


def test_aoi_without_overlap_is_an_empty_search_error(api, tmp_path: Path) -> None:
    """Dates match, the AOI lies far from every scene (Tasmania vs Greenland)."""
    url, _ = api
    far = {**AOI, "bbox": [146.0, -43.0, 147.0, -42.0], "crs": "EPSG:32755"}
    with pytest.raises(EmptySearchError) as err:
        search_items(aoi_from_config("tasmania", far), CatalogOptions(url=url, platforms=(), retries=0))
    msg = str(err.value)
    for part in ("tasmania", "2025-07-01", "2025-07-31", "inside the catalog's coverage"):
        assert part in msg, part
    assert "found" not in msg  # nothing matched at all (not: found and dropped by the cloud filter)
    out = tmp_path / "items.json"
    code = search_stage.main(["--name", "tasmania", "--aoi", json.dumps(far), "--out", str(out),
                              "--options", json.dumps({"url": url, "platforms": []})])
    assert code == 2 and not out.exists()
