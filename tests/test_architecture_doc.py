"""docs/architecture.md names every stage and sub-package; the top level stays stages + plumbing."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PIPELINE = REPO / "pipeline"
DOC = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
PLUMBING = {"errors", "cli", "config", "atomic"}


def _top_level_modules() -> set[str]:
    return {p.stem for p in PIPELINE.glob("*.py") if p.stem != "__init__"}


def _stage_commands() -> set[str]:
    """``python -m pipeline.X`` of every rule (X may be a sub-package or one of its modules)."""
    text = "".join(p.read_text(encoding="utf-8") for p in (REPO / "workflow" / "rules").glob("*.smk"))
    return set(re.findall(r"python -m (pipeline(?:\.\w+)+)", text))


def test_top_level_holds_stages_and_plumbing_only() -> None:
    modules = _top_level_modules()
    assert len(modules) <= 17, sorted(modules)
    commands = {c.split(".")[1] for c in _stage_commands()}
    library = modules - PLUMBING - commands - {"index"}  # index: the user's catalog tool, not a rule
    assert not library, f"library modules at the top level (move them into a sub-package): {sorted(library)}"


def test_every_stage_and_sub_package_is_in_the_architecture_doc() -> None:
    missing = [c for c in sorted(_stage_commands()) if f"`{c}`" not in DOC]
    missing += [f"pipeline.{m}" for m in sorted(_top_level_modules() - PLUMBING) if f"`pipeline.{m}`" not in DOC]
    packages = sorted(p.name for p in PIPELINE.iterdir() if (p / "__init__.py").is_file())
    missing += [f"package {name}" for name in packages if f"| `{name}` |" not in DOC]
    assert not missing, f"docs/architecture.md does not describe: {missing}"
