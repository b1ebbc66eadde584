"""Reliability of the cube stage against a bad asset server: corrupt files, servers that ignore
or refuse range requests, expired signatures.

Two dates of the real Landsat scene are served over HTTP on 127.0.0.1; only the second date's
red band is faulty. With ``on_error: raise`` the stage stops with an error naming the date and
its item (and the log names the asset file); with ``on_error: skip`` the date is left out and
recorded, and the date kept is *identical* to the same date of a clean run: the cube never
holds garbage. (A truncated file is covered in tests/test_cube_errors.py.)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import BAND_FILES, SCENE, RangeServer, write_scene_catalog
from werkzeug.wrappers import Response

from pipeline import cube as cube_stage
from pipeline import search as search_stage

AOI = {"bbox": [-39.6, 72.0, -38.4, 72.5], "start": "2025-07-01", "end": "2025-07-31", "crs": "EPSG:32624"}
CUBE = {"resolution": 600, "anchor": "edge", "chunk": 256}
RED = f"{SCENE}_SR_B4.TIF"


def corrupt_tiles(src: Path, dest: Path, tmp: Path) -> None:
    """``dest``: ``src`` as a tiled DEFLATE GeoTIFF (like real COGs) with bytes flipped inside
    every tile's compressed data; the header and tile index stay intact."""
    plain = tmp / "deflate.tif"
    with rasterio.open(src) as s:
        profile = s.profile | {"compress": "deflate", "tiled": True, "blockxsize": 128, "blockysize": 128}
        with rasterio.open(plain, "w", **profile) as d:
            d.write(s.read())
    blob = bytearray(plain.read_bytes())
    with rasterio.open(plain) as s:
        rows, cols = (-(-s.height // 128), -(-s.width // 128))
        tiles = [(int(s.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1)),
                  int(s.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1))) for r in range(rows) for c in range(cols)]
    for offset, size in tiles:
        for k in range(10, size, 97):
            blob[offset + k] ^= 0x5A
    dest.write_bytes(bytes(blob))


@pytest.fixture(scope="module")
def served(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RangeServer, Path, xr.Dataset]]:
    """(folder, server, frozen items.json, clean cube) shared by the tests of this module."""
    base = tmp_path_factory.mktemp("assets")
    root = base / "served"
    root.mkdir()
    for suffix in BAND_FILES.values():
        shutil.copy(shared_dir / "data" / "landsat-c2l2-scene" / f"{SCENE}_{suffix}.TIF", root)
    for name in ("ignore_range", "refuse_range", "forbidden"):  # same bytes, faulty server answers
        shutil.copy(root / RED, root / f"{name}.TIF")
    corrupt_tiles(root / RED, root / "corrupt.TIF", base)
    server = RangeServer(root)
    write_scene_catalog(shared_dir, server.url, base / "catalog")
    frozen = base / "items.json"
    assert search_stage.main(["--name", "g", "--aoi", json.dumps(AOI), "--out", str(frozen),
                              "--options", json.dumps({"url": str(base / "catalog"), "platforms": []})]) == 0
    assert cube_stage.main(["--items", str(frozen), "--name", "g", "--aoi", json.dumps(AOI), "--options",
                            json.dumps(CUBE), "--out", str(base / "clean.zarr")]) == 0
    clean = xr.open_zarr(base / "clean.zarr").load()
    assert clean.sizes["time"] == 2 and np.isfinite(clean.reflectance.values).mean() > 0.5
    yield base, server, frozen, clean
    server.close()


def ignore_range(path: str, environ: dict) -> Response | None:
    """The whole file with status 200, whatever Range asked (a server without range support)."""
    if path == "ignore_range.TIF" and environ.get("HTTP_RANGE"):
        return Response(Path(environ["root"], path).read_bytes(), status=200, content_type="image/tiff")
    return None


def refuse_range(path: str, environ: dict) -> Response | None:
    if path == "refuse_range.TIF" and environ.get("HTTP_RANGE"):
        return Response("requested range not satisfiable", status=416)
    return None


def forbidden(path: str, environ: dict) -> Response | None:
    """What blob storage answers once a SAS token has expired."""
    if path == "forbidden.TIF" and environ["REQUEST_METHOD"] == "GET":
        return Response("<Error><Code>AuthenticationFailed</Code></Error>", status=403)
    return None


FAULTS: dict[str, Callable[[str, dict], Response | None] | None] = {
    "ignore_range": ignore_range, "refuse_range": refuse_range, "forbidden": forbidden, "corrupt": None,
}


def run_cube(served: tuple, name: str, tmp_path: Path, on_error: str) -> tuple[int, Path, str]:
    """Build the cube with the second date's red band pointing at ``name``.TIF; (code, out, item id)."""
    base, server, frozen, _ = served
    doc = json.loads(frozen.read_text())
    second = doc["features"][1]
    second["assets"]["red"]["href"] = f"{server.url}/{name}.TIF"
    items = tmp_path / "items.json"
    items.write_text(json.dumps(doc))
    fault = FAULTS[name]
    server.fault = None if fault is None else (lambda p, env: fault(p, {**env, "root": str(base / "served")}))
    out = tmp_path / "cube.zarr"
    try:
        code = cube_stage.main(["--items", str(items), "--name", "g", "--aoi", json.dumps(AOI),
                                "--options", json.dumps({**CUBE, "on_error": on_error}),
                                "--catalog", json.dumps({"retries": 1, "backoff": 0}), "--out", str(out)])
    finally:
        server.fault = None
    return code, out, second["id"]


@pytest.mark.parametrize("name", list(FAULTS))
def test_bad_asset_stops_with_an_error_naming_date_item_and_asset(served, name: str, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    clean = served[3]
    code, out, item_id = run_cube(served, name, tmp_path, "raise")
    assert code == 2
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))  # nothing half-written
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and r.name == "pipeline.cli"]
    assert len(errors) == 1
    second_date = str(clean.time.values[1])[:10]
    for part in (f"cannot read the assets of {second_date}", item_id, "cube.on_error: skip"):
        assert part in errors[0], (part, errors[0])
    assert f"{name}.TIF" in caplog.text  # the log names the faulty asset file


@pytest.mark.parametrize("name", list(FAULTS))
def test_bad_asset_skipped_and_recorded_and_the_rest_is_identical_to_a_clean_run(served, name: str,
                                                                                  tmp_path: Path) -> None:
    clean = served[3]
    code, out, item_id = run_cube(served, name, tmp_path, "skip")
    assert code == 0
    cube = xr.open_zarr(out).load()
    assert list(cube.time.values) == [clean.time.values[0]]
    assert len(cube.attrs["skipped"]) == 1
    assert cube.attrs["skipped"][0].startswith(str(clean.time.values[1])[:10]) and item_id in cube.attrs["skipped"][0]
    for var in ("reflectance", "qa", "valid", "valid_fraction"):
        np.testing.assert_array_equal(cube[var].values, clean[var].isel(time=[0]).values, err_msg=var)
    assert cube.attrs["crs"] == clean.attrs["crs"] and cube.attrs["transform"] == clean.attrs["transform"]
    assert str(cube.item_ids.values[0]) == str(clean.item_ids.values[0])


def test_the_same_file_served_correctly_is_read_exactly(served, tmp_path: Path) -> None:
    """Control: the faulty files hold the right pixels; served without faults they give the clean cube."""
    _, server, frozen, clean = served
    doc = json.loads(frozen.read_text())
    doc["features"][1]["assets"]["red"]["href"] = f"{server.url}/forbidden.TIF"  # same bytes as the red band
    items = tmp_path / "items.json"
    items.write_text(json.dumps(doc))
    out = tmp_path / "cube.zarr"
    assert cube_stage.main(["--items", str(items), "--name", "g", "--aoi", json.dumps(AOI),
                            "--options", json.dumps(CUBE), "--out", str(out)]) == 0
    np.testing.assert_array_equal(xr.open_zarr(out).reflectance.values, clean.reflectance.values)
