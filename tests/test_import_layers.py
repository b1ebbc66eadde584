"""One-way imports between the pipeline's layers, checked on the source with ``ast``.

Training never imports prediction: no ``pipeline/training/*`` module imports the stage
``pipeline.predict`` or the prediction module of the inference package. Between training and
inference data flows one way: training may use inference (a relearning model is trained on a
first-stage model's predictions), no ``pipeline/inference/*`` module imports
``pipeline.training``, and ``pipeline/models/*`` (the model folder format both read) imports
neither. No library module imports a stage module (the ``python -m pipeline.<stage>`` entry
points that the Snakemake rules call): stages sit on top, shared code (models, model files,
device, class table) below both sides.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "pipeline"
RULES = ROOT.parent / "workflow" / "rules"
#: What the train side must not import: map prediction.
PREDICTION = ("pipeline.predict", "pipeline.inference.prediction")
TRAINING = ("pipeline.training",)
INFERENCE = ("pipeline.inference",)


def stage_modules() -> tuple[str, ...]:
    """The modules the rules run (``python -m pipeline.<stage>``; a package's ``__main__``)."""
    text = "".join(p.read_text() for p in sorted(RULES.glob("*.smk")))
    stages = set()
    for name in set(re.findall(r"python -m (pipeline(?:\.\w+)+)", text)):
        path = ROOT.parent.joinpath(*name.split("."))
        stages.add(name if path.with_suffix(".py").is_file() else f"{name}.__main__")
    return tuple(sorted(stages))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Dotted names ``path`` imports at run time (``from a.b import c`` gives ``a.b`` and
    ``a.b.c``); imports under ``if TYPE_CHECKING:`` only serve annotations and are skipped."""
    names: set[str] = set()
    nodes: list[ast.AST] = [ast.parse(path.read_text(), filename=str(path))]
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            nodes.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        nodes.extend(ast.iter_child_nodes(node))
    return names


def hits(names: set[str], targets: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == t or n.startswith(t + ".") for t in targets))


def test_the_stages_are_found() -> None:
    stages = stage_modules()
    assert {"pipeline.predict", "pipeline.train", "pipeline.vote", "pipeline.evaluate"} <= set(stages)
    for stage in stages:
        assert ROOT.parent.joinpath(*stage.split(".")).with_suffix(".py").is_file(), stage


@pytest.mark.parametrize("path", sorted((ROOT / "training").rglob("*.py")), ids=lambda p: p.name)
def test_training_does_not_import_prediction(path: Path) -> None:
    assert hits(imported(path), PREDICTION) == [], f"{module_name(path)} imports map prediction"


@pytest.mark.parametrize("path", sorted((ROOT / "inference").rglob("*.py")), ids=lambda p: p.name)
def test_inference_does_not_import_training(path: Path) -> None:
    assert hits(imported(path), TRAINING) == [], (
        f"{module_name(path)} imports training; move what both need (model files, baseline) to pipeline.models"
    )


@pytest.mark.parametrize("path", sorted((ROOT / "models").rglob("*.py")), ids=lambda p: p.name)
def test_models_import_neither_training_nor_inference(path: Path) -> None:
    assert hits(imported(path), TRAINING + INFERENCE) == [], f"{module_name(path)} imports a layer above models"


def test_the_predict_stage_does_not_import_the_train_stage() -> None:
    assert hits(imported(ROOT / "predict.py"), ("pipeline.train",)) == []


def test_library_modules_do_not_import_stages() -> None:
    stages = stage_modules()
    bad = {}
    for path in sorted(ROOT.rglob("*.py")):
        name = module_name(path)
        if name in stages or f"{name}.__main__" in stages:
            continue
        found = hits(imported(path), stages)
        if found:
            bad[name] = found
    assert bad == {}, "library modules import stage modules; move the shared code below the stages"


def private_imports(source: str) -> list[str]:
    """``from pipeline.x import _name`` and ``pipeline.x._name`` attribute uses in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
            found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            chain, value = [node.attr], node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id == "pipeline":
                found.append(".".join(["pipeline", *reversed(chain)]))
    return found


def test_private_import_detector_finds_both_forms() -> None:
    source = "import pipeline.cli\nfrom pipeline.cli import _secret, public\nx = pipeline.cli._hidden\ny = self._own\n"
    assert private_imports(source) == ["pipeline.cli._secret", "pipeline.cli._hidden"]


def test_no_module_imports_a_private_name_of_another() -> None:
    bad = {module_name(p): found for p in sorted(ROOT.rglob("*.py"))
           if (found := private_imports(p.read_text(encoding="utf-8")))}
    assert bad == {}, "make the name public (no leading underscore) or move it where it is used"
