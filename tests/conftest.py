"""Shared fixtures: the ../shared reference data and servers started on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder of reference data (present in CI and for every developer)."""
    if not SHARED.is_dir():
        pytest.skip(f"reference data folder {SHARED} is absent (tests read real data from ../shared)")
    return SHARED


class RangeServer:
    """A static HTTP file server on 127.0.0.1 answering Range requests (werkzeug ``send_file``).

    Python's ``http.server`` ignores Range; GDAL needs it to read COGs. ``fault`` may be set to
    a callable ``(path, environ) -> response | None`` to inject failures in tests.
    """

    def __init__(self, root: Path) -> None:
        from werkzeug.serving import make_server
        from werkzeug.wrappers import Request, Response
        from werkzeug.utils import send_file

        self.root = root.resolve()
        self.requests: list[tuple[str, str | None]] = []
        self.fault: Callable[[str, dict], object] | None = None

        @Request.application
        def app(request: Request) -> Response:
            rel = request.path.lstrip("/")
            self.requests.append((rel, request.headers.get("Range")))
            if self.fault is not None:
                injected = self.fault(rel, request.environ)
                if injected is not None:
                    return injected  # type: ignore[return-value]
            path = (self.root / rel).resolve()
            if self.root not in path.parents or not path.is_file():
                return Response("not found", status=404)
            return send_file(path, request.environ, conditional=True)

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)


@pytest.fixture
def range_server() -> Iterator[Callable[[Path], RangeServer]]:
    """Factory: ``range_server(root)`` serves ``root`` over HTTP with Range support until the test ends."""
    servers: list[RangeServer] = []

    def start(root: Path) -> RangeServer:
        server = RangeServer(root)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
