"""Project frame: the README's commands, CI, the workflow lint, and environments vs pyproject."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from conftest import run_together

from pipeline.config import load_schema

REPO = Path(__file__).resolve().parents[1]
# conda-forge name -> PyPI name where they differ
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def norm(name: str) -> str:
    name = re.split(r"[\[<>=!~ ;]", name.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def env_packages() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in sorted((REPO / "envs").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        names = set()
        for dep in spec["dependencies"]:
            if isinstance(dep, dict):
                names |= {norm(d) for d in dep.get("pip", [])}
            else:
                names.add(norm(CONDA_TO_PYPI.get(norm(dep), norm(dep))))
        out[path.name] = names - NOT_PACKAGES
    return out


def test_envs_match_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {norm(d) for d in project["dependencies"]}
    envs = env_packages()
    used = set().union(*envs.values())
    assert used - declared == set(), f"in envs/*.yaml but not in pyproject: {sorted(used - declared)}"
    assert declared - used == set(), f"in pyproject but in no envs/*.yaml: {sorted(declared - used)}"
    for name, spec in ((p.name, yaml.safe_load(p.read_text())) for p in (REPO / "envs").glob("*.yaml")):
        assert spec["channels"][0] == "conda-forge", name
        for dep in spec["dependencies"]:
            if isinstance(dep, str) and norm(dep) not in NOT_PACKAGES:
                assert re.search(r"=\d", dep), f"{name}: {dep} is not pinned"


def test_every_rule_env_exists() -> None:
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for rel in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / rel).resolve().is_file(), f"{smk.name}: {rel}"


def test_torch_range_admits_the_cpu_wheel() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    torch = [d for d in project["dependencies"] if norm(d) == "torch"]
    assert torch and "2.13" not in torch[0].split("<")[-1]
    from packaging.specifiers import SpecifierSet

    assert "2.13.0" in SpecifierSet(torch[0][len("torch"):])


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.S)


def test_ci_runs_the_readme_test_command() -> None:
    commands = readme_commands()
    demo = [c for c in commands if "snakemake --cores 8 maps" in c]
    tests = [c for c in commands if "pytest" in c and "snakemake" not in c]
    assert len(demo) == 1 and len(tests) == 1
    assert "torch==2.13.0" in demo[0] and "torch==2.13.0" in tests[0]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests[0].strip() in [line.strip() for line in ci]


def test_snakemake_lint_is_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_dry_run_plans_the_demo(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "maps", "--snakefile", str(REPO / "Snakefile"),
                           "--directory", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rule in ("generate_demo", "search_stac", "build_cube", "build_features"):
        assert rule in proc.stdout


def test_misspelled_config_key_stops_snakemake(tmp_path: Path) -> None:
    bad = yaml.safe_load((REPO / "config.yaml").read_text())
    bad["catalog"]["max_clouds"] = 20
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "maps", "--configfile", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "unknown config key 'catalog.max_clouds'" in proc.stdout + proc.stderr


def test_profiles_dry_run(tmp_path: Path) -> None:
    """The SLURM, paper-GPU and paper-protocol profiles plan the demo (the SLURM executor plugin is
    installed); the four dry runs start together."""
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    for name, overrides in (("paper-gpu", "paper.yaml"), ("paper-protocol", "paper-protocol.yaml")):
        paper = tmp_path / "workflow" / "profiles" / name
        paper.mkdir(parents=True)
        (paper / overrides).write_text((REPO / "workflow" / "profiles" / name / overrides).read_text())
    profiles = ("slurm", "paper-gpu", "local", "paper-protocol")
    # cwd: the tmp folder, where the profiles' relative config files lie
    procs = run_together(*([sys.executable, "-m", "snakemake", "--profile", str(REPO / "workflow" / "profiles" / profile),
                            "-n", "maps", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
                           for profile in profiles), cwd=tmp_path)
    for profile, proc in zip(profiles, procs, strict=True):
        assert proc.returncode == 0, (profile, proc.stdout[-2000:] + proc.stderr[-2000:])
        assert "train_model" in proc.stdout


def test_configfile_aois_replace_the_demo_aoi(tmp_path: Path) -> None:
    """`--configfile my.yaml` with its own AOI plans that AOI only (settings still merge); on the
    demo's catalog the demo's own settings fill what my.yaml leaves unset, on my own catalog they do
    not apply: the schema's defaults do (the dry runs print every stage's options)."""
    aoi = {"mine": {"bbox": [112.92, 28.12, 112.94, 28.14], "start": "2021-01-01", "end": "2021-12-31",
                    "crs": "EPSG:32649"}}
    mine = tmp_path / "my.yaml"
    mine.write_text(yaml.safe_dump({"aois": aoi, "train": {"epochs": 3}}))
    (tmp_path / "catalog").mkdir()
    (tmp_path / "labels.tif").write_bytes(b"")
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump({"aois": aoi, "catalog": {"url": str(tmp_path / "catalog")},
                                   "labels": {"source": str(tmp_path / "labels.tif")}}))
    demo, mine_run = run_together(*([sys.executable, "-m", "snakemake", "-n", "-p", "maps", "--configfile", str(path)]
                                    for path in (mine, own)), cwd=REPO)
    out = demo.stdout + demo.stderr
    assert demo.returncode == 0, out[-2000:]
    assert "results/mine/maps/semi_convlstm/classes.tif" in out and "results/demo/" not in out
    assert '"epochs": 3' in out and '"hidden": 16' in out  # my setting, and config.yaml's for the rest
    assert '"max_windows_per_epoch": 40' in out and '"stem": "gabor"' in out  # the demo's own settings
    assert '"pixel_fraction": 0.05' in out and '"unet_width": 16' in out
    out = mine_run.stdout + mine_run.stderr
    assert mine_run.returncode == 0, out[-2000:]
    defaults = load_schema()["properties"]
    train = defaults["train"]["properties"]
    assert '"stem": "resnet18"' in out and defaults["features"]["properties"]["stem"]["default"] == "resnet18"
    for key, value in (("epochs", train["epochs"]["default"]),
                       ("max_windows_per_epoch", train["max_windows_per_epoch"]["default"]),
                       ("unet_width", train["unet"]["properties"]["width"]["default"]),
                       ("pixel_fraction", defaults["labels"]["properties"]["scarcity"]["properties"]
                        ["pixel_fraction"]["default"])):
        assert f'"{key}": {json.dumps(value)}' in out, key
    assert '"stem": "gabor"' not in out and '"max_windows_per_epoch": 40' not in out
