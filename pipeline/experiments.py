"""Stage ``experiments``: gather the accuracy of every run of one experiment into a table and a plot.

``python -m pipeline.experiments --experiment label_fraction --runs '<JSON list>'
--csv results/experiments/label_fraction.csv --json results/experiments/label_fraction.json
--png results/experiments/label_fraction.png``

The experiments of the paper, each a Snakemake target:

============== ========================= ============ =====================================
experiment     parameter (per run)       plotted      paper
============== ========================= ============ =====================================
compare        - (one run per model)     OA, K, W-F1  section 4.2, Table 1
label_fraction train ``label_fraction``  W-F1         section 5.2, Fig. 10
time_length    train ``time_steps`` (t)  OA           section 5.1, Fig. 9
cloud_cover    scene cloud cover < value OA           section 5.3, Fig. 11 (100 = all dates)
cv             test fold of the design   OA, K, W-F1  spatial k-fold CV (mean, std per model)
============== ========================= ============ =====================================

``--runs`` lists the runs as ``{"aoi", "model", "value", "accuracy", "card"}`` objects:
``accuracy`` is the run's ``accuracy.json`` (keys of :mod:`pipeline.evaluate`), ``card`` its
``model_card.json`` (number of dates), ``value`` the parameter (null for ``compare``). The
table has one row per run, in the order given: experiment, aoi, model, value, label, OA, kappa,
weighted F1, evaluated pixels, dates, then the F1 of every class. The JSON holds the same rows
(with per-class F1 and support) and the run sources; the PNG plots the experiment's metric.
The tables themselves (pure) are :mod:`pipeline.report.experiment_tables`, the plots
:mod:`pipeline.report.experiment_figures` and :mod:`pipeline.report.cv`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.atomic import atomic_path, write_text_atomic
from pipeline.cli import base_parser, run_stage
from pipeline.errors import AccuracyError
from pipeline.report.experiment_tables import (
    EXPERIMENT_NAMES,
    EXPERIMENTS,
    ExperimentName,
    Run,
    build_table,
    parse_runs,
    table_csv,
)

log = logging.getLogger(__name__)


def read_json(path: str | Path, *, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; a missing or broken file raises AccuracyError naming the fix."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AccuracyError(f"cannot read {what} {path} ({exc}); rerun the rule that writes it") from exc
    if not isinstance(data, dict):
        raise AccuracyError(f"{what} {path} is not a JSON object; rerun the rule that writes it")
    return data


def aggregate(experiment: ExperimentName | str, runs: Sequence[Run], *, csv_path: Path, json_path: Path,
              png_path: Path) -> list[dict[str, Any]]:
    """Read every run's accuracy.json (and model card), write the CSV, JSON and PNG; return the rows."""
    from pipeline.report.cv import cv_csv, cv_png, cv_summary
    from pipeline.report.experiment_figures import experiment_png

    accuracies = [read_json(r.accuracy, what="accuracy") for r in runs]
    cards = [read_json(r.card, what="model card") if r.card and Path(r.card).is_file() else None for r in runs]
    rows = build_table(experiment, runs, accuracies, cards)
    exp = EXPERIMENTS[experiment]
    doc = {"experiment": exp.name, "parameter": exp.parameter, "metrics": list(exp.metrics), "axis": exp.axis,
           "paper": exp.paper, "rows": rows,
           "sources": [{"aoi": r.aoi, "model": r.model, "value": r.value, "accuracy": r.accuracy, "card": r.card}
                       for r in runs]}
    if exp.name == "cv":  # the table is the per-model summary over the folds; the JSON keeps both
        doc["summary"] = cv_summary(rows)
        csv_text, png = cv_csv(doc["summary"]), cv_png(doc["summary"])
    else:
        csv_text, png = table_csv(rows), experiment_png(exp, rows)
    write_text_atomic(csv_path, csv_text)
    write_text_atomic(json_path, json.dumps(doc, indent=1, allow_nan=False))
    with atomic_path(png_path) as tmp:
        tmp.write_bytes(png)
    log.info("experiment %s: %d runs -> %s", exp.name, len(rows), json_path)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--experiment", required=True, choices=EXPERIMENT_NAMES, help="experiment name")
    parser.add_argument("--runs", required=True, help="JSON list of {aoi, model, value, accuracy, card}")
    parser.add_argument("--csv", required=True, type=Path, help="table to write (CSV)")
    parser.add_argument("--json", required=True, type=Path, help="table to write (JSON)")
    parser.add_argument("--png", required=True, type=Path, help="plot to write (PNG)")
    args = parser.parse_args(argv)

    def work() -> None:
        aggregate(args.experiment, parse_runs(args.runs), csv_path=args.csv, json_path=args.json, png_path=args.png)

    return run_stage(work, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
