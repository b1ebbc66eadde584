"""Shape of the code under pipeline/: no function longer than :data:`MAX_LINES` lines (its
``def`` line to the last line of its body, docstring included), so that each reads on one screen
and its parts carry names."""

from __future__ import annotations

import ast
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"
MAX_LINES = 80


def long_functions(root: Path = PIPELINE, limit: int = MAX_LINES) -> list[str]:
    """``path:line name (n lines)`` of every function or method under ``root`` longer than ``limit``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if n > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_no_function_is_longer_than_80_lines() -> None:
    too_long = long_functions()
    assert not too_long, (f"functions over {MAX_LINES} lines (split them into named helpers):\n"
                          + "\n".join(too_long))


def test_the_guard_finds_a_long_function(tmp_path: Path) -> None:
    pkg = tmp_path / "pipeline"
    pkg.mkdir()
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_LINES))
    (pkg / "m.py").write_text(f"def short():\n    return 1\n\n\nclass C:\n    def long(self):\n{body}\n")
    assert long_functions(pkg) == [f"pipeline/m.py:6 long ({MAX_LINES + 1} lines)"]
