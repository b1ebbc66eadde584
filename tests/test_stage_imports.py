"""Layering: a stage module (a ``python -m pipeline.<stage>`` entry point that a Snakemake rule
calls) sits at the edge; no other module under pipeline/ imports one (only the tests do), so the
library never depends on a command and no import cycle runs through a stage."""

from __future__ import annotations

import ast
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"
STAGES = frozenset({"search", "cube", "composite", "features", "labels", "train", "predict", "evaluate", "vote",
                    "experiments", "index", "cloud_subset"})
# Known imports of a stage from outside it, to be removed by moving the imported code out of the
# stage: (importing module, stage). Nothing may be added here.
KNOWN_STAGE_IMPORTS: frozenset[tuple[str, str]] = frozenset()


def imported_modules(tree: ast.AST) -> set[str]:
    """Dotted names of every module an AST imports, anywhere in it (functions and
    ``TYPE_CHECKING`` blocks included; ``from pipeline import x`` counts as ``pipeline.x``)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def stage_imports(root: Path = PIPELINE) -> set[tuple[str, str]]:
    """(module, stage) for every module under ``root`` that imports another module's stage."""
    found = set()
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        for name in imported_modules(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            parts = name.split(".")
            if len(parts) >= 2 and parts[0] == "pipeline" and parts[1] in STAGES and module != f"pipeline.{parts[1]}":
                found.add((module, parts[1]))
    return found


def test_no_module_imports_a_stage() -> None:
    found = stage_imports()
    new = sorted(found - KNOWN_STAGE_IMPORTS)
    assert not new, "modules importing a stage (move what they need out of the stage):\n" + "\n".join(
        f"{m} imports pipeline.{s}" for m, s in new)
    gone = sorted(KNOWN_STAGE_IMPORTS - found)
    assert not gone, f"no longer imported, remove from KNOWN_STAGE_IMPORTS: {gone}"


def test_the_check_sees_every_form_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / "pipeline"
    (pkg / "report").mkdir(parents=True)
    (pkg / "cube.py").write_text("from pipeline.cube import x\n")  # the stage itself: fine
    (pkg / "report" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                         "    from pipeline.experiments import Experiment\n")
    (pkg / "report" / "b.py").write_text("def f():\n    from pipeline import train\n")
    (pkg / "report" / "c.py").write_text("import pipeline.cube.sub\nfrom pipeline.report import cube\n")
    assert stage_imports(pkg) == {("pipeline.report.a", "experiments"), ("pipeline.report.b", "train"),
                                  ("pipeline.report.c", "cube")}
