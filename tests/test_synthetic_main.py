"""Tests of the ``python -m pipeline.synthetic`` stage entry point (stage ``demo``)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pystac
import pytest
import rasterio

from pipeline.synthetic import DemoSpec, demo_grid
from pipeline.synthetic.__main__ import main


def test_main_writes_the_catalog(tmp_path: Path) -> None:
    out = tmp_path / "resources" / "demo" / "catalog"
    options = {"seed": 3, "size": 64, "n_dates": 4, "center": [112.95, 28.2]}
    assert main(["--out", str(out), "--options", json.dumps(options)]) == 0
    items = sorted((out / "items").glob("*.json"))
    assert len(items) == 4
    coll = pystac.Collection.from_file(str(out / "collection.json"))
    assert coll.id == "landsat-c2-l2"
    grid = demo_grid(DemoSpec(seed=3, size=64, center=(112.95, 28.2)))
    item = pystac.Item.from_file(str(items[0]))
    assert item.properties["proj:transform"] == list(grid.transform)[:6]
    with rasterio.open(item.assets["nir08"].href) as src:
        assert src.shape == (64, 64) and src.transform == grid.transform
    meta = json.loads((out / "demo.json").read_text())
    assert meta["spec"]["seed"] == 3 and meta["grid"]["crs"] == "EPSG:32649"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ('{"sizee": 64}', "sizee"),
        ('{"size": 8}', "size"),
        ('{"seed": 1,', "not valid JSON"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_main_rejects_bad_options_with_exit_code_2(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, options: str, fragment: str,
) -> None:
    out = tmp_path / "catalog"
    with caplog.at_level(logging.ERROR):
        assert main(["--out", str(out), "--options", options]) == 2
    assert fragment in caplog.text
    assert not out.exists()


def test_module_runs_as_a_script(tmp_path: Path) -> None:
    out = tmp_path / "cat"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.synthetic", "--out", str(out), "--options", '{"size": 32, "n_dates": 2}'],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list((out / "items").glob("*.json"))) == 2
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.synthetic", "--out", str(out), "--options", '{"bogus": 1}'],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2 and "bogus" in proc.stderr
