"""Reading the workflow: it changes nothing on disk (`snakemake -n` leaves an incomplete store in
results/ where it is), and envs/workflow.yaml (the environment that runs Snakemake) provides
every package that the Snakefile, the rule files and the pipeline modules they import need."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
IMPORT_LINE = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import\b|import\s+([\w.]+))", re.MULTILINE)
# import name -> the conda package of envs/workflow.yaml that provides it (itself or as a dependency)
PROVIDED_BY = {
    "yaml": "pyyaml",
    "torch": "pytorch",
    "sklearn": "scikit-learn",
    "joblib": "scikit-learn",
    "skimage": "scikit-image",
    "odc.geo": "odc-geo",
    "odc.stac": "odc-stac",
    "planetary_computer": "planetary-computer",
    "affine": "rasterio",
    "pandas": "xarray",
}
# object storage only (pipeline.raster.object_store, the `cloud` extra): never for the local
# results/ folder the workflow reads
OPTIONAL = {"fsspec"}


def workflow_files() -> list[Path]:
    return [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]


def pipeline_file(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_names(path: Path) -> set[str]:
    """Every module an import statement of ``path`` names (module level and inside functions);
    ``from a import b`` also names ``a.b`` (a submodule or not)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


def parse_time_packages() -> set[str]:
    """Top-level third-party import names (``odc.geo``/``odc.stac`` for the odc namespace) that
    the workflow files and, transitively, the pipeline modules they import name."""
    todo = [m[1] or m[2] for path in workflow_files() for m in IMPORT_LINE.finditer(path.read_text())]
    seen: set[str] = set()
    external: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        if parts[0] == "pipeline":
            path = pipeline_file(name)
            if path is not None:  # importing a.b.c runs a/__init__ and a/b/__init__ first
                todo += [".".join(parts[:i]) for i in range(1, len(parts))]
                todo += sorted(imported_names(path))
        elif parts[0] not in sys.stdlib_module_names and parts[0] != "__future__":
            external.add(".".join(parts[:2]) if parts[0] == "odc" else parts[0])
    return external


def workflow_env() -> set[str]:
    spec = yaml.safe_load((REPO / "envs" / "workflow.yaml").read_text())
    names = set()
    for dep in spec["dependencies"]:
        deps = dep.get("pip", []) if isinstance(dep, dict) else [dep]
        names |= {re.split(r"[=<>!~ ]", d, maxsplit=1)[0].lower() for d in deps}
    return names


def test_the_import_walk_finds_what_the_workflow_needs() -> None:
    found = parse_time_packages()
    # written out by hand: jsonschema (config validation), pyproj/shapely (AOIs), zarr (the
    # incomplete stores), torch (the receptive field behind evaluation.buffer: null)
    assert {"snakemake", "yaml", "jsonschema", "pyproj", "shapely", "zarr", "xarray", "torch"} <= found
    assert "pipeline" not in found and "json" not in found


def test_workflow_env_provides_every_parse_time_import() -> None:
    env = workflow_env()
    missing = {name for name in parse_time_packages() - OPTIONAL if PROVIDED_BY.get(name, name) not in env}
    assert not missing, f"envs/workflow.yaml lacks the packages of {sorted(missing)} (name map: PROVIDED_BY)"


def incomplete_store(path: Path) -> None:
    """A Zarr group whose completion manifest promises more files than it holds."""
    path.mkdir(parents=True)
    (path / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group",
                                                "attributes": {"completion_manifest": ".pipeline-complete.json"}}))
    (path / ".pipeline-complete.json").write_text(json.dumps({"files": 99, "bytes": 12345}))


def test_dry_run_changes_nothing_in_results(tmp_path: Path) -> None:
    from pipeline.raster.zarr_io import store_problem

    store = tmp_path / "results" / "demo" / "features.zarr"
    incomplete_store(store)
    assert store_problem(store) is not None
    before = sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in (tmp_path / "results").rglob("*"))
    for args in (["-n", "maps"], ["--lint"]):
        proc = subprocess.run([sys.executable, "-m", "snakemake", *args, "--snakefile", str(REPO / "Snakefile"),
                               "--directory", str(tmp_path), "--configfile", str(REPO / "config.yaml"),
                               "--cores", "1"], check=False, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0 or args == ["--lint"], proc.stdout[-3000:] + proc.stderr[-3000:]
        after = sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in (tmp_path / "results").rglob("*"))
        assert after == before, args
    assert store.is_dir() and not list(store.parent.glob(".tmp-*"))
