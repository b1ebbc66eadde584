"""Serve a local folder of STAC JSON as a real STAC API on loopback (``rustac serve``).

A folder holding ``collection.json`` and ``items/*.json`` (a static collection, such as the
embedded demo or a user's own indexed rasters) is searched through exactly the same
pystac-client code as a remote API: this module starts rustac's in-memory STAC API server on
127.0.0.1 for the duration of the search. Asset hrefs are made absolute before serving
(:mod:`pipeline.stac.hrefs`). rustac implements Core, Features and Item Search but
not the Query/Filter extensions, which the search code detects from the conformance classes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import CatalogServerError
from pipeline.stac.hrefs import absolutize_item

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rustac_command() -> list[str]:
    exe = shutil.which("rustac") or str(Path(sys.executable).with_name("rustac"))
    if not Path(exe).exists():
        raise CatalogServerError(
            "the 'rustac' command is not installed; `pip install rustac` (a project dependency) to "
            "serve a local catalog folder"
        )
    return [exe]


def collect_items(folder: Path) -> tuple[Path, list[dict[str, object]]]:
    """Find ``collection.json`` and read every ``items/*.json`` Item of a catalog folder.

    Asset hrefs come back absolute (:func:`pipeline.stac.hrefs.absolutize_item`: paths, relative
    ones resolved against their item file, become ``file://`` URIs), so that no client resolves
    them against the temporary server's URL.
    """
    collection = folder / "collection.json"
    if not collection.is_file():
        raise CatalogServerError(
            f"{folder} is not a catalog folder: it needs collection.json and items/*.json "
            f"(or set catalog.url to a STAC API URL; `python -m pipeline.index SCENES --out {folder}` "
            f"writes one for a folder of GeoTIFFs)"
        )
    items = []
    for path in sorted((folder / "items").glob("*.json")):
        try:
            with open(path, encoding="utf-8") as fh:
                item = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            raise CatalogServerError(f"cannot read item {path} ({exc}); fix or remove the file") from exc
        if not isinstance(item, dict) or item.get("type") != "Feature":
            raise CatalogServerError(f"{path} is not a STAC Item (no \"type\": \"Feature\"); fix or remove the file")
        items.append(absolutize_item(item, path))
    if not items:
        raise CatalogServerError(f"catalog folder {folder} holds no items/*.json")
    return collection, items


@contextlib.contextmanager
def serve_folder(folder: str | os.PathLike[str], *, startup_timeout: float = 30.0) -> Iterator[str]:
    """Serve ``folder`` as a STAC API on 127.0.0.1; yield its root URL; stop it on exit."""
    folder = Path(folder).resolve()
    collection, items = collect_items(folder)
    with tempfile.TemporaryDirectory(prefix="stac-serve-") as tmp:
        fc = Path(tmp) / "items.json"
        fc.write_text(json.dumps({"type": "FeatureCollection", "features": items}), encoding="utf-8")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [*_rustac_command(), "serve", str(collection), str(fc), "--addr", f"127.0.0.1:{port}"]
        log.info("serving %d items of %s at %s", len(items), folder, url)
        logfile = open(Path(tmp) / "server.log", "w+b")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if proc.poll() is not None:
                    logfile.seek(0)
                    raise CatalogServerError(
                        f"rustac serve exited with {proc.returncode} while loading {folder}: "
                        f"{logfile.read().decode(errors='replace')[-2000:]}"
                    )
                try:
                    with urllib.request.urlopen(f"{url}/", timeout=2) as resp:  # noqa: S310 - loopback
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise CatalogServerError(f"rustac serve did not answer on {url} within {startup_timeout:.0f} s")
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            logfile.close()
