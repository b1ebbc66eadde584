"""The code a stage runs, as one digest (stdlib only: the Snakefile imports it).

Snakemake's own ``code`` rerun trigger sees a rule's shell command, not the ``pipeline`` modules
behind ``python -m pipeline.<stage>``: an updated package would leave every result as it was.
Every rule therefore passes ``code=code_digest("pipeline.<stage>")`` as a parameter, so that
Snakemake's ``params`` trigger reruns exactly the stages whose code changed (and what depends on
them), and the training stage keeps the digest in its checkpoint, so that it never resumes a run
of other code.

The digest covers the source files of the stage's module and of every ``pipeline`` module it
imports, transitively (imports at module level and inside functions, relative or absolute, and the
packages' ``__init__`` that importing a submodule runs), byte for byte: any edit of those files
counts, a comment too; files the stage does not import do not. Third-party packages do not count
(their versions are the environment's: Snakemake's ``software-env`` trigger). The import
statements are found by a pattern, not by parsing (this runs every time Snakemake reads the
workflow): an import line inside a docstring counts as an import, which can only add a module.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

from pipeline.errors import PipelineError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""The ``pipeline`` package folder whose modules the digests cover."""
PACKAGE = "pipeline"


def module_path(module: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The source file of ``pipeline`` module ``module`` (``a.b`` -> ``a/b.py`` or
    ``a/b/__init__.py`` under ``package_dir``), or None when it is not a module of the package
    (``from pipeline.x import SomeClass`` names ``pipeline.x.SomeClass`` too)."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = package_dir.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]*)|import[ \t]+([^\n#;]+))",
                    re.MULTILINE)


def imported_modules(source: str, module: str, *, is_package: bool) -> set[str]:
    """The ``pipeline`` names the import statements of ``source`` (the text of ``module``) name,
    absolute or relative; ``from a import b`` names ``a`` and ``a.b``."""
    names: set[str] = set()
    for match in IMPORT.finditer(source):
        base, imported, plain = match.groups()
        if plain is not None:
            names |= {part.split()[0] for part in plain.split(",") if part.strip()}
            continue
        level = len(base) - len(base.lstrip("."))
        if level:
            here = module.split(".") if is_package else module.split(".")[:-1]
            parent = here[: len(here) - level + 1]
            rest = base.lstrip(".")
            base = ".".join([*parent, *([rest] if rest else [])])
        members = [part.split()[0] for part in imported.strip("()").replace("\\", " ").split(",") if part.strip()]
        names |= {base, *(f"{base}.{member}" for member in members)}
    return {name for name in names if name == PACKAGE or name.startswith(PACKAGE + ".")}


def _read(path: Path, module: str) -> tuple[frozenset[str], str]:
    """The ``pipeline`` modules the file imports and the sha256 of its bytes (read once per
    process and version of the file)."""
    stat = path.stat()
    return _read_version(path, module, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=None)
def _read_version(path: Path, module: str, mtime_ns: int, size: int) -> tuple[frozenset[str], str]:
    data = path.read_bytes()
    imports = imported_modules(data.decode("utf-8"), module, is_package=path.name == "__init__.py")
    return frozenset(imports), hashlib.sha256(data).hexdigest()


def stage_modules(module: str, package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Every ``pipeline`` module that running ``module`` may import: name -> source file, sorted
    by name. Raises :class:`PipelineError` when ``module`` itself is not in the package."""
    if module_path(module, package_dir) is None:
        raise PipelineError(f"no module {module} under {package_dir}: a rule names a stage the package does not have; "
                            f"check the module in its `python -m` command and its code parameter")
    todo, found = [module], {}
    while todo:
        name = todo.pop()
        if name in found:
            continue
        path = module_path(name, package_dir)
        if path is None:
            continue
        found[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # a.b.c runs a and a.b first
        todo += sorted(_read(path, name)[0])
    return dict(sorted(found.items()))


def code_digest(module: str, package_dir: Path = PACKAGE_DIR) -> str:
    """16 hex digits of sha256 over the names and file digests of :func:`stage_modules` of
    ``module`` (a stage run as ``python -m <module>``)."""
    digest = hashlib.sha256()
    for name, path in stage_modules(module, package_dir).items():
        digest.update(f"{name}\0{_read(path, name)[1]}\0".encode())
    return digest.hexdigest()[:16]
