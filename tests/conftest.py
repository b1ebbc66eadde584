"""Shared fixtures: the ../shared reference data, servers started on 127.0.0.1, and the workflow
runs that several tests read, made once per session (``demo_run``, ``period_run``) and started in
the background when the session starts (:class:`Prefetch`), so that they run on the second core
while the tests before their first user run on the first."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

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
        from werkzeug.utils import send_file
        from werkzeug.wrappers import Request, Response

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


SCENE = "LC08_L2SP_005009_20150710_20200908_02_T2"
BAND_FILES = {"coastal": "SR_B1", "blue": "SR_B2", "green": "SR_B3", "red": "SR_B4",
              "nir08": "SR_B5", "swir16": "SR_B6", "swir22": "SR_B7", "qa_pixel": "QA_PIXEL"}


def write_scene_catalog(shared: Path, server_url: str, dest: Path, *, n_items: int = 2,
                        cloud_cover: list[float] | None = None) -> list[dict]:
    """A catalog folder of real Planetary Computer items (collection landsat-c2-l2) whose asset
    hrefs and projection are rewritten to the real scene served at ``server_url``."""
    import copy
    import json

    import rasterio
    from rasterio.warp import transform_bounds

    responses = shared / "data" / "stac-responses"
    collection = json.loads((responses / "planetary-computer-landsat-c2-l2-collection.json").read_text())
    page = json.loads((responses / "planetary-computer-landsat-c2-l2-items.json").read_text())
    scene_dir = shared / "data" / "landsat-c2l2-scene"
    with rasterio.open(scene_dir / f"{SCENE}_SR_B4.TIF") as src:
        transform, shape, bounds, crs = src.transform, src.shape, src.bounds, src.crs
    w, s, e, n = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    (dest / "items").mkdir(parents=True)
    (dest / "collection.json").write_text(json.dumps(collection))
    items = []
    for i, feature in enumerate(page["features"][:n_items]):
        item = copy.deepcopy(feature)
        for key, suffix in BAND_FILES.items():
            item["assets"][key]["href"] = f"{server_url}/{SCENE}_{suffix}.TIF"
        item["properties"].update({
            "proj:epsg": 32624, "proj:shape": list(shape), "proj:transform": list(transform)[:6],
            "eo:cloud_cover": (cloud_cover or [10.0] * n_items)[i],
            "datetime": f"2025-07-{10 + i:02d}T13:20:00Z",
        })
        item["bbox"] = [w, s, e, n]
        item["geometry"] = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
        (dest / "items" / f"{item['id']}.json").write_text(json.dumps(item))
        items.append(item)
    return items


@pytest.fixture
def real_scene_catalog(shared_dir: Path, range_server):
    """Factory: ``real_scene_catalog(dest, root=None, **kw) -> (dest, items, server)``; ``root``
    is the folder served over HTTP (default: the real scene in ../shared)."""

    def make(dest: Path, root: Path | None = None, **kw):
        server = range_server(root or shared_dir / "data" / "landsat-c2l2-scene")
        items = write_scene_catalog(shared_dir, server.url, dest, **kw)
        return dest, items, server

    return make


def with_test_design(labels, classes, **design):
    """``labels`` (an xarray Dataset with ``labels`` (time, y, x) uint8) as the labels stage
    writes it: ``reference`` (= ``labels`` when absent) plus the test design ``split`` / ``fold``
    / attrs ``design`` (:func:`pipeline.labels.with_design`). Default: the paper design (no
    held-out block), so a test about something else trains on every labelled pixel as before;
    pass ``design="spatial_blocks"`` and block options for the spatial design."""
    from pipeline.labels import with_design
    from pipeline.reference.classes import ClassTable
    from pipeline.split.design import DesignOptions

    if "reference" not in labels:
        labels = labels.assign(reference=labels["labels"])
    options = DesignOptions.from_mapping({"design": "paper", "folds": 2, **design})
    return with_design(labels, ClassTable.from_config(classes), options)


def paper_protocol(config: dict) -> dict:
    """``config`` with the overrides of the paper-protocol profile (per-date cube, per-date labels
    with cloud and shadow classes, the map of the last date), merged key by key as Snakemake
    merges config files: the plumbing tests run the per-date path, which the cloud-cover
    experiment needs; the period path has its own workflow tests (demo period map, tiling)."""
    import yaml

    profile = REPO / "workflow" / "profiles" / "paper-protocol" / "paper-protocol.yaml"

    def merged(base: dict, over: dict) -> dict:  # key by key, into nested blocks (labels.scarcity)
        out = dict(base)
        for key, value in over.items():
            out[key] = merged(out.get(key) or {}, value) if isinstance(value, dict) else value
        return out

    return merged(config, yaml.safe_load(profile.read_text()))


def small_config() -> dict:
    """The tiny demo (a 61 x 61 px AOI, 10 dates, 2 epochs of 6 windows) on the per-date path: every
    stage of `maps` runs, in about a minute on 2 cores."""
    import yaml

    config = paper_protocol(yaml.safe_load((REPO / "config.yaml").read_text()))
    config["demo"].update(size=72, n_dates=10, overcast_dates=1, start="2021-01-01", end="2021-12-31")
    lon, lat = config["demo"]["center"]
    config["train"].update(time_steps=4, patch=16, stride=8, epochs=2, max_windows_per_epoch=6)
    config["train"]["convlstm"].update(hidden=8, rampup_epochs=1)
    config["evaluation"].update(min_per_stratum=5, target_se=0.05)
    config["aois"] = {"mini": {"bbox": [lon - 0.009, lat - 0.008, lon + 0.009, lat + 0.008],
                               "start": "2021-01-01", "end": "2021-12-31", "crs": "EPSG:32649"}}
    return config


def period_config() -> dict:
    """The small demo as the product runs it: monthly composites, one land-cover raster, the map of 2021."""
    import yaml

    config = small_config()
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    for key in ("cube", "labels", "predict"):
        config[key] = {**config[key], **base[key]}
    config["classes"] = base["classes"]
    return config


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--cores", "2", *args]


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(snakemake_cmd(workdir, *args), check=False, capture_output=True, text=True, timeout=900)


def run_together(*commands: list[str], cwd: Path | None = None,
                 timeout: float = 300) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands (dry runs) started together - the machine's cores share them - and
    waited for; their results in order. Output goes to files, so no pipe fills up and blocks."""
    with ExitStack() as stack:
        started = []
        for cmd in commands:
            out, err = (stack.enter_context(tempfile.TemporaryFile()) for _ in range(2))
            started.append((cmd, subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err), out, err))
        deadline = time.monotonic() + timeout
        results = []
        for cmd, proc, out, err in started:
            try:
                code = proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                for _, other, _, _ in started:
                    other.kill()
                raise
            results.append(subprocess.CompletedProcess(cmd, code, _read(out), _read(err)))
        return results


def _read(fh: IO[bytes]) -> str:
    fh.seek(0)
    return fh.read().decode(errors="replace")


# --------------------------------------------------------------------------- workflow runs, started early


class Prefetch:
    """Work that a fixture needs, queued when the session starts and done in a background thread
    on the machine's second core while the tests before its first user run on the first; the
    fixture waits for it (:func:`prefetched`), or does it itself if the background has not
    started it yet. ``steps`` run one after the other: a command (run in its own process group,
    its result a CompletedProcess; a non-zero exit ends the work) or a callable (its result what
    it returns; what it raises ends the work and is raised again to whoever waits). ``after``:
    work to finish first. ``on_stop``: called when the session ends before the work (kill what
    a callable step started)."""

    def __init__(self, name: str, workdir: Path, steps: list[list[str] | Callable[[], Any]], *,
                 after: Prefetch | None = None, on_stop: Callable[[], None] | None = None,
                 timeout: float = 900) -> None:
        self.name, self.workdir, self.steps, self.after, self.timeout = name, workdir, steps, after, timeout
        self.on_stop = on_stop
        self.results: list[Any] = []  # per step: its result, or the exception that ended the work
        self.started = False  # claimed by the background thread or by a fixture (under _LOCK)
        self.done = [threading.Event() for _ in steps]
        self.proc: subprocess.Popen[bytes] | None = None
        self.cancelled = False

    def claim(self) -> bool:
        with _LOCK:
            if self.started:
                return False
            self.started = True
            return True

    def finish(self, step: int = -1) -> Any:
        """The result of ``step`` (default: the last), once it has run: here if nobody started it."""
        if self.claim():
            self.run()
        self.done[step].wait()
        result = self.results[step]
        if isinstance(result, BaseException):
            raise result
        return result

    def run(self) -> None:
        """Every step in turn (the caller has claimed the work)."""
        try:
            if self.after is not None and isinstance(before := self.after.finish(), subprocess.CompletedProcess) \
                    and before.returncode != 0:
                self._end(before)  # every step "fails" with the run it needed
                return
            for step in self.steps:
                if self.cancelled:
                    raise RuntimeError(f"{self.name}: the session ended first")
                result = step() if callable(step) else self._command(step)
                if isinstance(result, subprocess.CompletedProcess) and result.returncode != 0:
                    self._end(result)
                    return
                self.results.append(result)
                self.done[len(self.results) - 1].set()
        except BaseException as exc:  # noqa: BLE001 - raised again to whoever waits for it
            self._end(exc)

    def _end(self, result: Any) -> None:
        while len(self.results) < len(self.steps):
            self.results.append(result)
            self.done[len(self.results) - 1].set()

    def _command(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True)
            try:
                code = self.proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                code = -signal.SIGKILL
                err.write(f"\n{self.name}: timed out after {self.timeout} s\n".encode())
            return subprocess.CompletedProcess(cmd, code, _read(out), _read(err))

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """Start no further step; kill the running one and everything it started."""
        self.cancelled = True
        self._kill()
        if self.on_stop is not None:
            self.on_stop()


# fixture name -> (tmp_path_factory -> Prefetch | None: None when there is nothing to do): the work
# that fixtures take from the background. A test module adds its own at import (collection imports
# every module before the first test runs).
PREFETCH: dict[str, Callable[[pytest.TempPathFactory], Prefetch | None]] = {}
_ENTRIES: dict[str, Prefetch | None] = {}
_LOCK = threading.RLock()


def prefetch_entry(name: str, factory: pytest.TempPathFactory) -> Prefetch | None:
    """The work registered as ``name`` in :data:`PREFETCH`, made (not started) on first use."""
    with _LOCK:
        if name not in _ENTRIES:
            _ENTRIES[name] = PREFETCH[name](factory)
        return _ENTRIES[name]


def prefetched(name: str, factory: pytest.TempPathFactory, step: int = -1) -> tuple[Path, Any]:
    """The workdir of the work registered as ``name`` and the result of its ``step`` (default:
    the last), once that step has finished: work the background has not started yet is done here."""
    run = prefetch_entry(name, factory)
    if run is None:
        raise LookupError(f"{name}: nothing to run")
    return run.workdir, run.finish(step)


@pytest.fixture(scope="session", autouse=True)
def _workflow_runs_in_the_background(request: pytest.FixtureRequest,
                                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Queue the registered work (:data:`PREFETCH`) that the selected tests need, in the order of
    their first users, and do it in one background thread, one at a time (the tests keep a core).
    At the end of the session, work still going (an interrupted session) is stopped."""
    first_use: dict[str, int] = {}
    for index, item in enumerate(request.session.items):
        for name in getattr(item, "fixturenames", ()):
            if name in PREFETCH:
                first_use.setdefault(name, index)
    queue = [run for name in sorted(first_use, key=first_use.__getitem__)
             if (run := prefetch_entry(name, tmp_path_factory)) is not None]

    def work() -> None:
        for run in queue:
            if run.claim():
                run.run()

    thread = threading.Thread(target=work, name="workflow runs", daemon=True)
    if queue:
        thread.start()
    yield
    for run in queue:
        run.claim()  # nothing more starts
        run.stop()
    if queue:
        thread.join(timeout=60)


def _demo_workdir(factory: pytest.TempPathFactory, name: str, config: dict) -> Path:
    import yaml

    workdir = factory.mktemp(name)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return workdir


def _demo_maps(factory: pytest.TempPathFactory) -> Prefetch:
    workdir = _demo_workdir(factory, "demo", small_config())
    return Prefetch("demo_run", workdir, [snakemake_cmd(workdir, "maps")])


def _period_maps(factory: pytest.TempPathFactory) -> Prefetch:
    workdir = _demo_workdir(factory, "period", period_config())
    return Prefetch("period_run", workdir, [snakemake_cmd(workdir, "maps")])


PREFETCH.update(demo_run=_demo_maps, period_run=_period_maps)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`snakemake maps` on :func:`small_config`, run once for the whole session (in the background
    from the session's start). Tests only read it (dry runs included); a test that reruns or
    damages outputs works on :func:`copy_run`."""
    workdir, proc = prefetched("demo_run", tmp_path_factory)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir


@pytest.fixture(scope="session")
def period_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`snakemake maps` on :func:`period_config` (monthly composites, the map of 2021), once per
    session, in the background from the session's start. Read only."""
    workdir, proc = prefetched("period_run", tmp_path_factory)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of the workflow folder ``run`` (results, the demo catalog, Snakemake's metadata) at
    ``dest``, modification times kept, so that Snakemake finds it up to date. Frozen STAC items
    still point at ``run``'s catalog (absolute hrefs), which stays in place for the session."""
    shutil.copytree(run, dest, symlinks=True)
    return dest
