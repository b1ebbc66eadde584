"""The experiment tables: what each experiment varies and shows, its runs, and one row per run.
Pure: dicts in, dicts and CSV text out (the stage :mod:`pipeline.experiments` reads and writes
the files).

A run (:class:`Run`) is one trained-and-evaluated model: its AOI, model, parameter value and
``accuracy.json`` / ``model_card.json``. The table has one row per run, in the order given:
experiment, aoi, model, value, label, OA, kappa, weighted F1, evaluated pixels, dates, map date,
per-class F1 and support, and what the model card says about the training run.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pipeline.errors import AccuracyError, ConfigError

ExperimentName = Literal["compare", "label_fraction", "time_length", "cloud_cover", "cv"]
EXPERIMENT_NAMES: tuple[str, ...] = get_args(ExperimentName)
METRICS = ("overall_accuracy", "kappa", "f1_weighted")


@dataclass(frozen=True)
class Experiment:
    """What one experiment varies and shows: ``parameter`` (None for compare), the metrics it
    plots, the axis title and the paper figure it reproduces."""

    name: str
    parameter: str | None
    metrics: tuple[str, ...]
    axis: str
    paper: str

    def label(self, value: float | None) -> str:
        """Display label of a parameter value ("50 %", "t=6", "< 10 %", "all")."""
        if value is None:
            return "-"
        if self.name == "label_fraction":
            return f"{value * 100:g} %"
        if self.name == "time_length":
            return f"t={value:g}"
        if self.name == "cloud_cover":
            return "all" if value >= 100 else f"< {value:g} %"
        if self.name == "cv":
            return f"fold {value:g}"
        return f"{value:g}"


EXPERIMENTS: dict[str, Experiment] = {
    "compare": Experiment("compare", None, METRICS, "model", "section 4.2, Table 1"),
    "label_fraction": Experiment("label_fraction", "label_fraction", ("f1_weighted",), "labelled dates kept",
                                 "section 5.2, Fig. 10"),
    "time_length": Experiment("time_length", "time_steps", ("overall_accuracy",), "time series length t",
                              "section 5.1, Fig. 9"),
    "cloud_cover": Experiment("cloud_cover", "max_cloud_cover", ("overall_accuracy",), "scene cloud cover",
                              "section 5.3, Fig. 11"),
    "cv": Experiment("cv", "fold", METRICS, "fold", "not in the paper: spatial k-fold cross-validation"),
}


@dataclass(frozen=True)
class Run:
    """One trained-and-evaluated run: AOI, model, parameter value and its files."""

    aoi: str
    model: str
    value: float | None
    accuracy: str
    card: str | None = None


def parse_runs(text: str | Sequence[Mapping[str, Any]]) -> list[Run]:
    """Runs from the ``--runs`` JSON list; bad entries raise ConfigError naming the entry."""
    try:
        raw = json.loads(text) if isinstance(text, str) else list(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--runs is not valid JSON ({exc}); pass a list of run objects") from exc
    if not isinstance(raw, list) or not raw:
        raise ConfigError("--runs must be a non-empty JSON list of {aoi, model, value, accuracy, card}; "
                          "configure at least one model and value in the experiments section")
    runs = []
    for entry in raw:
        if not isinstance(entry, Mapping) or not {"aoi", "model", "accuracy"} <= set(entry):
            raise ConfigError(f"run {entry!r} needs the keys aoi, model, accuracy (and value, card)")
        value = entry.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"run {entry!r}: value must be a number or null")
        runs.append(Run(str(entry["aoi"]), str(entry["model"]), None if value is None else float(value),
                        str(entry["accuracy"]), None if entry.get("card") is None else str(entry["card"])))
    return runs


def run_row(experiment: Experiment, run: Run, accuracy: Mapping[str, Any],
            card: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The table row of one run from its accuracy dict (``accuracy.json``) and model card."""
    missing = [k for k in (*METRICS, "per_class") if k not in accuracy]
    if missing:
        raise AccuracyError(f"{run.accuracy} lacks {missing}; rerun evaluate_map for {run.aoi}/{run.model}")
    per_class = {name: {"f1": v.get("f1"), "support": v.get("support")} for name, v in accuracy["per_class"].items()}
    dates, training = None, None
    if card is not None:
        dates = card.get("data", {}).get("shape", {}).get("time")
        training = training_facts(card)
    return {
        "experiment": experiment.name, "aoi": run.aoi, "model": run.model, "value": run.value,
        "label": experiment.label(run.value),
        **{m: float(accuracy[m]) for m in METRICS},
        "evaluated_pixels": accuracy.get("evaluated_pixels"), "dates": dates,
        "map_date": accuracy.get("map_date"), "per_class": per_class, "training": training,
    }


TRAINING_OPTIONS = ("epochs", "max_windows_per_epoch", "label_fraction", "time_steps", "loss_normalization",
                    "consistency_weight", "consistency_scaling", "rampup_epochs", "unlabelled_window_ratio",
                    "search_space", "n_iter")


def training_facts(card: Mapping[str, Any]) -> dict[str, Any]:
    """What a model card says about the training run: best epoch, epochs run, early stop, the
    validation OA / F1 of the best epoch and the options that set the training budget."""
    metrics = card.get("metrics") or {}
    options = card.get("options") or {}
    return {"best_epoch": card.get("best_epoch"), "epochs_run": card.get("epochs_run"),
            "stopped_early": card.get("stopped_early"), "val_oa": metrics.get("val_oa"),
            "val_f1": metrics.get("val_f1"), "labelled_share": metrics.get("labelled_share"),
            **{k: options.get(k) for k in TRAINING_OPTIONS}}


def build_table(experiment: ExperimentName | str, runs: Sequence[Run],
                accuracies: Sequence[Mapping[str, Any]], cards: Sequence[Mapping[str, Any] | None]) -> list[dict[str, Any]]:
    """Rows of the experiment table (one per run, in run order). Pure: dicts in, dicts out."""
    if experiment not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {experiment!r}; allowed: {', '.join(EXPERIMENT_NAMES)}")
    exp = EXPERIMENTS[experiment]
    if not len(runs) == len(accuracies) == len(cards):
        raise ValueError("runs, accuracies and cards must have the same length")
    seen: set[tuple[str, str, float | None]] = set()
    rows = []
    for run, acc, card in zip(runs, accuracies, cards, strict=True):
        key = (run.aoi, run.model, run.value)
        if key in seen:
            raise ConfigError(f"run {key} is listed twice; give each (aoi, model, value) once")
        seen.add(key)
        if exp.parameter is not None and run.value is None:
            raise ConfigError(f"experiment {experiment} needs a value for every run, {key} has none")
        rows.append(run_row(exp, run, acc, card))
    return rows


def table_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as CSV text: fixed columns, then ``f1_<class>`` per class (first-seen order)."""
    classes: list[str] = []
    for row in rows:
        classes += [c for c in row["per_class"] if c not in classes]
    base = ["experiment", "aoi", "model", "value", "label", *METRICS, "evaluated_pixels", "dates", "map_date"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*base, *(f"f1_{c}" for c in classes)], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = {k: ("" if row.get(k) is None else row[k]) for k in base}
        if row.get("value") is not None:
            flat["value"] = f"{row['value']:g}"  # 1.0 -> 1, 0.5 -> 0.5, t 6.0 -> 6
        for c in classes:
            f1 = row["per_class"].get(c, {}).get("f1")
            flat[f"f1_{c}"] = "" if f1 is None else f1
        writer.writerow(flat)
    return buf.getvalue()
