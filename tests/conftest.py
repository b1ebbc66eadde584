"""Shared fixtures: the ../shared reference data, servers started on 127.0.0.1, and the tiny demo
workflow run once per session (``demo_run``) that the workflow tests read."""

from __future__ import annotations

import shutil
import subprocess
import sys
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


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`snakemake maps` on :func:`small_config`, run once for the whole session. Tests only read
    it (dry runs included); a test that reruns or damages outputs works on :func:`copy_run`."""
    import yaml

    workdir = tmp_path_factory.mktemp("demo")
    (workdir / "config.yaml").write_text(yaml.safe_dump(small_config(), sort_keys=False))
    proc = snakemake(workdir, "maps")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of the workflow folder ``run`` (results, the demo catalog, Snakemake's metadata) at
    ``dest``, modification times kept, so that Snakemake finds it up to date. Frozen STAC items
    still point at ``run``'s catalog (absolute hrefs), which stays in place for the session."""
    shutil.copytree(run, dest, symlinks=True)
    return dest
