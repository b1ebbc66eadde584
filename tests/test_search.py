"""Search stage: filters, frozen output, and the clear errors (empty result, API down, 5xx)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import requests

from pipeline import search as search_stage
from pipeline.errors import EmptySearchError, StacError
from pipeline.stac.aoi import aoi_from_config
from pipeline.stac.search import CatalogOptions, search_items, server_side_filters
from pipeline.stac.server import serve_folder

AOI = {"bbox": [-39.6, 72.0, -38.4, 72.5], "start": "2025-07-01", "end": "2025-07-31", "crs": "EPSG:32624"}


class FlakyProxy:
    """Forwards to a real STAC API but answers ``status`` to the first ``failures`` requests
    (an injected fault in front of a real server, both on 127.0.0.1)."""

    def __init__(self, upstream: str, failures: int, status: int = 503) -> None:
        from werkzeug.serving import make_server
        from werkzeug.wrappers import Request, Response

        self.calls = 0

        @Request.application
        def app(request: Request) -> Response:
            self.calls += 1
            if self.calls <= failures:
                return Response("unavailable", status=status)
            body = request.get_data()
            up = requests.request(request.method, upstream + request.full_path.rstrip("?"), data=body or None,
                                  headers={"Content-Type": request.headers.get("Content-Type", "application/json")})
            text = up.text.replace(upstream, self.url)
            return Response(text, status=up.status_code, content_type=up.headers.get("Content-Type"))

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()


@pytest.fixture
def catalog(real_scene_catalog, tmp_path: Path):
    folder, items, _ = real_scene_catalog(tmp_path / "catalog", n_items=3, cloud_cover=[5.0, 60.0, 95.0])
    return folder, items


def run(tmp_path: Path, options: dict, aoi: dict = AOI) -> tuple[int, Path]:
    out = tmp_path / "res" / "items.json"
    code = search_stage.main(["--name", "greenland", "--aoi", json.dumps(aoi), "--out", str(out),
                              "--options", json.dumps({"platforms": [], **options})])
    return code, out


def test_client_side_cloud_filter_and_frozen_items(catalog, tmp_path: Path) -> None:
    folder, items = catalog
    code, out = run(tmp_path, {"url": str(folder), "max_cloud_cover": 70})
    assert code == 0
    frozen = json.loads(out.read_text())
    assert [f["properties"]["eo:cloud_cover"] for f in frozen["features"]] == [5.0, 60.0]
    assert frozen["pipeline:search"]["filter_mode"] == "client-side"
    assert frozen["pipeline:search"]["matched"] == 3
    # hrefs are frozen unsigned and unchanged
    assert frozen["features"][0]["assets"]["red"]["href"] == items[0]["assets"]["red"]["href"]


def test_platform_filter(catalog, tmp_path: Path) -> None:
    folder, items = catalog
    code, out = run(tmp_path, {"url": str(folder), "platforms": ["landsat-8"]})
    platforms = {i["properties"]["platform"] for i in items}
    assert platforms == {"landsat-9"}  # the real PC page holds Landsat 9 scenes
    assert code == 2 and not out.exists()


def test_rustac_query_returns_nothing_so_it_is_never_sent(catalog) -> None:
    """The reason for the conformance check: rustac silently answers `query` searches with 0 items."""
    folder, _ = catalog
    with serve_folder(folder) as url:
        body = {"collections": ["landsat-c2-l2"], "query": {"eo:cloud_cover": {"lte": 100}}}
        with_query = requests.post(f"{url}/search", json=body, timeout=10).json()
        without = requests.post(f"{url}/search", json={"collections": ["landsat-c2-l2"]}, timeout=10).json()
    assert len(without["features"]) == 3
    assert len(with_query["features"]) == 0


def test_server_side_filter_kwargs() -> None:
    opts = CatalogOptions(max_cloud_cover=20, platforms=("landsat-8",))
    q = server_side_filters(opts, has_query=True, has_filter=True)
    assert q == {"query": {"eo:cloud_cover": {"lte": 20}, "platform": {"in": ["landsat-8"]}}}
    f = server_side_filters(opts, has_query=False, has_filter=True)
    assert f["filter_lang"] == "cql2-json" and f["filter"]["args"][0]["args"][1] == 20
    assert server_side_filters(opts, has_query=False, has_filter=False) == {}


def test_empty_search_names_aoi_dates_and_limits(catalog, tmp_path: Path, caplog) -> None:
    folder, _ = catalog
    aoi = {**AOI, "start": "2019-01-01", "end": "2019-12-31"}
    with serve_folder(folder) as url, pytest.raises(EmptySearchError) as err:
        search_items(aoi_from_config("greenland", aoi), CatalogOptions(url=url, platforms=()))
    msg = str(err.value)
    for part in ("greenland", "2019-01-01", "2019-12-31", "80", "max_cloud_cover", "widen"):
        assert part in msg
    code, out = run(tmp_path, {"url": str(folder)}, aoi)
    assert code == 2 and not out.exists()
    assert not list(out.parent.glob(".tmp-*")) if out.parent.exists() else True


def test_all_scenes_too_cloudy(catalog, tmp_path: Path, caplog) -> None:
    folder, _ = catalog
    code, out = run(tmp_path, {"url": str(folder), "max_cloud_cover": 1})
    assert code == 2 and not out.exists()
    assert "3 found, all dropped" in caplog.text and "cloud cover" in caplog.text


def test_5xx_is_retried_then_succeeds(catalog, tmp_path: Path) -> None:
    folder, _ = catalog
    with serve_folder(folder) as url:
        proxy = FlakyProxy(url, failures=2)
        try:
            code, out = run(tmp_path, {"url": proxy.url, "retries": 3, "backoff": 0, "max_cloud_cover": 100})
        finally:
            proxy.close()
    assert code == 0
    assert len(json.loads(out.read_text())["features"]) == 3
    assert proxy.calls >= 4  # two refused, then landing page + search


def test_5xx_past_the_retry_budget_is_a_clear_error(catalog, tmp_path: Path, caplog) -> None:
    folder, _ = catalog
    with serve_folder(folder) as url:
        proxy = FlakyProxy(url, failures=100, status=503)
        try:
            code, out = run(tmp_path, {"url": proxy.url, "retries": 2, "backoff": 0})
        finally:
            proxy.close()
    assert code == 2 and not out.exists()
    assert proxy.calls == 3  # first try + 2 retries
    assert "cannot open the STAC API" in caplog.text and "catalog.retries" in caplog.text


def test_api_down_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    with pytest.raises(StacError, match="cannot open the STAC API"):
        search_items(aoi_from_config("x", AOI), CatalogOptions(url=f"http://127.0.0.1:{port}", retries=1, backoff=0))


def test_not_a_catalog_folder(tmp_path: Path, caplog) -> None:
    code, out = run(tmp_path, {"url": str(tmp_path / "nowhere")})
    assert code == 2 and "collection.json" in caplog.text
