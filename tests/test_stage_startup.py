"""Stage start-up: a stage imports the heavy libraries it uses, not those of other stages.

Every rule starts a fresh interpreter (``python -m pipeline.<stage>``), so an import that a stage
does not need is paid on every run: torch and scikit-learn cost about 1.5 s each on 2 cores, and
reached the composite stage through the tile plan's PCA record (bench/README.md, cube stage).
The check imports the stage modules in a fresh interpreter, one after the other in the order of
``ALLOWED``, and records what each adds.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "sklearn", "geopandas", "distributed")

# stage modules in import order -> the heavy libraries each may add when loaded (before it runs);
# one interpreter imports them in this order (a fresh one per stage costs ~2.5 s each), so a stage
# is checked for what it adds to those loaded before it
ALLOWED = {
    "pipeline.search": set(),
    "pipeline.cube": set(),
    "pipeline.composite": set(),
    "pipeline.labels": set(),
    "pipeline.features": {"torch"},
    "pipeline.train": {"torch"},
    "pipeline.predict": {"torch"},
    "pipeline.evaluate": {"sklearn"},
    "pipeline.vote": {"geopandas"},
}

PROBE = """
import importlib, json, sys
heavy, order = json.loads(sys.argv[1]), json.loads(sys.argv[2])
added = {}
for module in order:
    before = {m for m in heavy if m in sys.modules}
    importlib.import_module(module)
    added[module] = sorted({m for m in heavy if m in sys.modules} - before)
print(json.dumps(added))
"""


def test_a_stage_loads_only_the_heavy_libraries_it_needs() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(HEAVY), json.dumps(list(ALLOWED))],
                         capture_output=True, text=True, check=True)
    added = json.loads(out.stdout.strip().splitlines()[-1])
    extra = {m: sorted(set(added[m]) - ALLOWED[m]) for m in ALLOWED if set(added[m]) - ALLOWED[m]}
    assert not extra, f"stages import libraries they do not need at start-up (import them where used): {extra}"
    assert added["pipeline.features"] == ["torch"] and added["pipeline.evaluate"] == ["sklearn"]  # the probe sees imports


def test_the_lazy_feature_package_still_exports_its_names() -> None:
    import pipeline.enrich as enrich

    for name in enrich.__all__:
        assert getattr(enrich, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        enrich.nope  # noqa: B018 - the attribute access is the check
    from pipeline.enrich.compute import build_features

    assert enrich.build_features is build_features
