"""The code digest of a stage (pipeline.plan.code_digest): which modules it covers, that an edit of
one of them changes it and an edit elsewhere does not, and that every rule passes its stage's."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.plan.code_digest import code_digest, imported_modules, module_path, stage_modules

REPO = Path(__file__).resolve().parents[1]
RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))


def rule_stages() -> dict[str, tuple[str, str | None]]:
    """rule name -> (the module its shell runs with ``-m``, the module of its ``code=`` parameter)."""
    found = {}
    for path in RULE_FILES:
        for block in re.split(r"\n(?=rule |use rule )", path.read_text()):
            name = re.match(r"rule (\w+)", block)
            run = re.search(r"-m (pipeline\.[\w.]+)", block)
            if name and run:
                code = re.search(r'code=code_digest\("([\w.]+)"\)', block)
                found[name.group(1)] = (run.group(1), code.group(1) if code else None)
    return found


def ast_modules(module: str, package_dir: Path) -> set[str]:
    """The same walk as stage_modules, from parsed syntax trees (an independent computation)."""
    todo, found = [module], set()
    while todo:
        name = todo.pop()
        path = module_path(name, package_dir)
        if name in found or path is None:
            continue
        found.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join([*here[: len(here) - node.level + 1], *([node.module] if node.module else [])])
                else:
                    base = node.module or ""
                todo += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return found


def test_every_stage_rule_passes_the_digest_of_the_module_it_runs() -> None:
    stages = rule_stages()
    assert {"search_stac", "build_cube", "build_features", "train_model", "predict_map", "mosaic_map"} <= set(stages)
    for rule, (run, code) in stages.items():
        assert code == run, f"rule {rule} runs {run} but passes code={code}"


def test_the_pattern_walk_finds_the_modules_the_syntax_tree_names() -> None:
    package_dir = REPO / "pipeline"
    for run in sorted({run for run, _ in rule_stages().values()}):
        assert set(stage_modules(run)) == ast_modules(run, package_dir), run
    train = stage_modules("pipeline.train")
    assert {"pipeline", "pipeline.training", "pipeline.training.losses", "pipeline.models.convlstm",
            "pipeline.errors"} <= set(train)
    assert "pipeline.synthetic.landscape" not in train  # the demo generator is not the training stage's code


def test_imports_of_every_form() -> None:
    source = """
import pipeline.errors, os
from pipeline.training import (
    losses,
    loop as training_loop,
)
from . import sibling
from ..raster import cog
from .. import atomic
def later():
    from pipeline.models.registry import SKLEARN_MODELS  # inside a function
x = "import pipeline.not_this_line"
"""
    names = imported_modules(source, "pipeline.training.trainer", is_package=False)
    assert {"pipeline.errors", "pipeline.training", "pipeline.training.losses", "pipeline.training.loop",
            "pipeline.training.sibling", "pipeline.raster", "pipeline.raster.cog", "pipeline.atomic",
            "pipeline.models.registry", "pipeline.models.registry.SKLEARN_MODELS"} <= names
    assert all(name.startswith("pipeline") for name in names)
    assert imported_modules("from . import x", "pipeline.training", is_package=True) >= {"pipeline.training.x"}


def test_an_edit_changes_the_digest_of_the_stages_that_import_it_only(tmp_path: Path) -> None:
    package = tmp_path / "pipeline"
    shutil.copytree(REPO / "pipeline", package, ignore=shutil.ignore_patterns("__pycache__"))
    before = {m: code_digest(m, package) for m in ("pipeline.train", "pipeline.search", "pipeline.predict")}
    assert before == {m: code_digest(m) for m in before}  # the copy is the same code
    losses = package / "training" / "losses.py"
    assert "pipeline.training.losses" in stage_modules("pipeline.train", package)
    assert "pipeline.training.losses" not in stage_modules("pipeline.search", package)
    losses.write_text(losses.read_text().replace("math.exp(-5.0", "math.exp(-4.0"))
    after = {m: code_digest(m, package) for m in before}
    assert after["pipeline.train"] != before["pipeline.train"]
    assert after["pipeline.search"] == before["pipeline.search"]
    assert after["pipeline.predict"] == before["pipeline.predict"]


def test_an_unknown_stage_module_is_an_error() -> None:
    with pytest.raises(PipelineError, match="no module pipeline.trian"):
        code_digest("pipeline.trian")
