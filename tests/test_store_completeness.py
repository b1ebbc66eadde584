"""Completion manifests of the Zarr stores: a store whose files no longer add up (a run killed
while Snakemake deleted it before a rerun, or anything else removing files) is refused when read
and set aside by the Snakefile so that it is rebuilt - Zarr itself would read missing chunks as
fill values without a word."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from pipeline.errors import PipelineError
from pipeline.raster.zarr_io import (
    MANIFEST_NAME,
    open_store,
    set_aside_incomplete_stores,
    store_problem,
    write_zarr_atomic,
)


def small_store(path: Path) -> Path:
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {"valid": (("time", "y", "x"), rng.random((4, 16, 16)) > 0.5)},
        coords={"y": np.arange(16.0), "x": np.arange(16.0)},
        attrs={"crs": "EPSG:32649", "transform": [30.0, 0.0, 0.0, 0.0, -30.0, 0.0]},
    ).chunk({"time": 1, "y": 8, "x": 8})
    return write_zarr_atomic(ds, path)


def chunk_files(store: Path) -> list[Path]:
    return sorted(p for p in (store / "valid").rglob("*") if p.is_file() and p.name != "zarr.json")


def test_a_written_store_is_complete_and_reads_back(tmp_path: Path) -> None:
    store = small_store(tmp_path / "a" / "features.zarr")
    manifest = json.loads((store / MANIFEST_NAME).read_text())
    files = [p for p in store.rglob("*") if p.is_file() and p.name != MANIFEST_NAME]
    assert manifest == {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    assert store_problem(store) is None
    assert open_store(store, required=("valid",))["valid"].shape == (4, 16, 16)


@pytest.mark.parametrize("damage", ["chunk", "manifest", "root metadata"])
def test_a_store_missing_files_is_refused_with_the_fix(tmp_path: Path, damage: str) -> None:
    store = small_store(tmp_path / "features.zarr")
    victim = {"chunk": chunk_files(store)[3], "manifest": store / MANIFEST_NAME,
              "root metadata": store / "zarr.json"}[damage]
    victim.unlink()
    problem = store_problem(store)
    assert problem is not None
    with pytest.raises(PipelineError, match=r"is incomplete.*delete it and rerun.*rerun-incomplete"):
        open_store(store)


def test_a_store_of_another_tool_is_not_checked(tmp_path: Path) -> None:
    """No completion_manifest attr: written elsewhere; read as it is."""
    store = tmp_path / "other.zarr"
    xr.Dataset({"v": ("x", np.arange(3))}, attrs={"crs": "EPSG:4326", "transform": [1, 0, 0, 0, -1, 0]}).to_zarr(store)
    assert store_problem(store) is None


def test_incomplete_stores_are_set_aside_unless_a_run_holds_the_locks(tmp_path: Path) -> None:
    results = tmp_path / "results"
    good = small_store(results / "aoi" / "cube.zarr")
    bad = small_store(results / "aoi" / "features.zarr")
    nested = small_store(results / "aoi" / "experiments" / "cloud_cover" / "10" / "features.zarr")
    for path in chunk_files(bad)[::2] + chunk_files(nested)[:1]:
        path.unlink()
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("")
    assert set_aside_incomplete_stores(results, locks=locks) == []  # a run may be deleting it right now
    assert bad.exists()
    (locks / "0.input.lock").unlink()
    moved = set_aside_incomplete_stores(results, locks=locks)
    assert sorted(moved) == sorted([bad, nested])
    assert good.exists() and not bad.exists() and not nested.exists()
    assert (bad.parent / ".tmp-features.zarr.incomplete").is_dir()
    # the next write of that path removes what was set aside
    small_store(bad)
    assert not (bad.parent / ".tmp-features.zarr.incomplete").exists() and store_problem(bad) is None
