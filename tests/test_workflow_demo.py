"""The workflow end to end on a small embedded demo: `snakemake maps` builds every stage's
output, a second run does nothing, and a changed parameter reruns only what depends on it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr
import yaml

REPO = Path(__file__).resolve().parents[1]


def small_config() -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["demo"].update(size=72, n_dates=10, overcast_dates=1, start="2021-01-01", end="2021-12-31")
    lon, lat = config["demo"]["center"]
    config["aois"] = {"mini": {"bbox": [lon - 0.009, lat - 0.008, lon + 0.009, lat + 0.008],
                               "start": "2021-01-01", "end": "2021-12-31", "crs": "EPSG:32649"}}
    return config


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("demo")
    (workdir / "config.yaml").write_text(yaml.safe_dump(small_config(), sort_keys=False))
    proc = snakemake(workdir, "maps")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir


@pytest.mark.workflow
def test_maps_builds_the_demo(demo_run: Path) -> None:
    items = demo_run / "results" / "mini" / "items.json"
    assert items.is_file()
    cube = xr.open_zarr(demo_run / "results" / "mini" / "cube.zarr")
    assert cube.attrs["crs"] == "EPSG:32649"
    assert 8 <= cube.sizes["time"] <= 10 and cube.sizes["band"] == 7
    assert 50 <= cube.sizes["y"] <= 64 and 50 <= cube.sizes["x"] <= 64
    assert (demo_run / "logs" / "build_cube" / "mini.log").is_file()
    features = xr.open_zarr(demo_run / "results" / "mini" / "features.zarr")
    assert features.sizes["channel"] == 64 + 7 and features.sizes["time"] == cube.sizes["time"]
    assert features.attrs["features_stem"] == "gabor"
    assert not list((demo_run / "results").rglob(".tmp-*"))


@pytest.mark.workflow
def test_second_run_does_nothing_and_param_change_reruns_downstream_only(demo_run: Path) -> None:
    proc = snakemake(demo_run, "-n", "maps")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr

    config = yaml.safe_load((demo_run / "config.yaml").read_text())
    config["cube"]["min_valid_fraction"] = 0.05
    changed = demo_run / "changed.yaml"
    changed.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(demo_run, "-n", "maps", "--configfile", str(changed))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "build_cube" in out and "build_features" in out
    assert "search_stac" not in out and "generate_demo" not in out
