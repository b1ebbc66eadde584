"""Per-rule times of a finished demo run, from its Snakemake ``benchmark:`` files, with the map's accuracy.

Run ``snakemake --cores 8 maps`` first (in the repository, or in a folder holding a copy of
``config.yaml``: ``--snakefile Snakefile --directory DIR``), then::

    python bench/bench_demo.py [DIR]

Prints one line per rule (wall seconds, CPU seconds, peak RSS), the sum, the AOI grid, the
training budget and every report's overall accuracy, with the machine and its load average.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine

from pipeline.config import apply_demo_settings


def rule_times(workdir: Path) -> list[tuple[str, float, float, float]]:
    """``(rule/wildcards, wall s, cpu s, max RSS MiB)`` of every benchmark file under ``workdir``."""
    rows = []
    for path in sorted((workdir / "benchmarks").rglob("*.tsv")):
        with path.open() as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                rows.append((str(path.relative_to(workdir / "benchmarks").with_suffix("")), float(row["s"]),
                             float(row["cpu_time"]), float(row["max_rss"])))
    return rows


def main(argv: list[str]) -> int:
    workdir = Path(argv[0] if argv else ".").resolve()
    config = apply_demo_settings(yaml.safe_load((workdir / "config.yaml").read_text()))
    rows = rule_times(workdir)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} / {os.getloadavg()[1]:.2f} (1 / 5 min)")
    train = config["train"]
    for card in sorted((workdir / "results").glob("*/models/*/model_card.json")):  # what trained (--configfile too)
        train = {**train, **json.loads(card.read_text()).get("options", {})}
        break
    print(f"demo: size {config['demo']['size']}, {config['demo']['start']} .. {config['demo']['end']}; "
          f"train: {train['epochs']} epochs of {train['max_windows_per_epoch']} windows, "
          f"patch {train['patch']}, stride {train['stride']}")
    for name, wall, cpu, rss in rows:
        print(f"{name:48s} {wall:7.1f} s wall {cpu:7.1f} s cpu {rss:7.0f} MiB")
    print(f"{'sum of the rules':48s} {sum(r[1] for r in rows):7.1f} s wall {sum(r[2] for r in rows):7.1f} s cpu")
    for path in sorted((workdir / "results").glob("*/reports/**/accuracy.json")):
        acc = json.loads(path.read_text())
        print(f"{path.relative_to(workdir)}: OA {acc['overall_accuracy']:.4f}, kappa {acc['kappa']:.4f}, "
              f"W-F1 {acc['f1_weighted']:.4f} on {acc['evaluated_pixels']} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
