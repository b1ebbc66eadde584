"""Spatial k-fold cross-validation: per-model mean and spread over the folds. Pure: rows in, out.

``rows`` are the per-run rows of :func:`pipeline.report.experiment_tables.build_table` for the ``cv``
experiment (one per AOI, model and fold; ``value`` = the fold). The summary has one row per AOI
and model: the number of folds, the mean and sample standard deviation (ddof = 1; 0 for a single
fold) of OA, kappa and weighted F1, and of every class's F1 over the folds where the class has
reference pixels (its ``support`` > 0), with the summed support.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.models.registry import display_label

METRICS = ("overall_accuracy", "kappa", "f1_weighted")


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if arr.size == 0:
        return None, None
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def cv_summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One summary row per (aoi, model), in first-seen order (see module doc)."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["aoi"], row["model"]), []).append(row)
    out = []
    for (aoi, model), runs in groups.items():
        summary: dict[str, Any] = {"aoi": aoi, "model": model, "folds": len(runs),
                                   "evaluated_pixels": int(sum(r.get("evaluated_pixels") or 0 for r in runs))}
        for metric in METRICS:
            summary[f"{metric}_mean"], summary[f"{metric}_std"] = _mean_std([r[metric] for r in runs])
        classes: list[str] = []
        for r in runs:
            classes += [c for c in r["per_class"] if c not in classes]
        per_class = {}
        for c in classes:
            scored = [r["per_class"][c] for r in runs if (r["per_class"].get(c, {}).get("support") or 0) > 0]
            mean, std = _mean_std([v.get("f1") for v in scored])
            per_class[c] = {"f1_mean": mean, "f1_std": std, "folds": len(scored),
                            "support": int(sum(v.get("support") or 0 for v in scored))}
        summary["per_class"] = per_class
        out.append(summary)
    return out


def cv_csv(summary: Sequence[Mapping[str, Any]]) -> str:
    """The summary as CSV: aoi, model, folds, pixels, mean/std per metric, then per-class F1."""
    classes: list[str] = []
    for row in summary:
        classes += [c for c in row["per_class"] if c not in classes]
    base = ["aoi", "model", "folds", "evaluated_pixels", *(f"{m}_{s}" for m in METRICS for s in ("mean", "std"))]
    extra = [f"f1_{c}_{s}" for c in classes for s in ("mean", "std")]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*base, *extra], lineterminator="\n")
    writer.writeheader()
    for row in summary:
        flat = {k: ("" if row.get(k) is None else row[k]) for k in base}
        for c in classes:
            v = row["per_class"].get(c, {})
            for s in ("mean", "std"):
                flat[f"f1_{c}_{s}"] = "" if v.get(f"f1_{s}") is None else v[f"f1_{s}"]
        writer.writerow(flat)
    return buf.getvalue()


def cv_png(summary: Sequence[Mapping[str, Any]]) -> bytes:
    """Bars of the mean OA, kappa and W-F1 per model with the fold standard deviation as error bars."""
    from pipeline.report.experiment_figures import METRIC_LABELS, plt, png_bytes

    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(summary) + 1.5), 3.4))
    x = np.arange(len(summary))
    width = 0.8 / len(METRICS)
    for k, metric in enumerate(METRICS):
        means = [r[f"{metric}_mean"] for r in summary]
        stds = [r[f"{metric}_std"] for r in summary]
        ax.bar(x + k * width, means, width, yerr=stds, capsize=3, label=METRIC_LABELS[metric])
    labels = [f"{display_label(r['model'])}\n{r['aoi']}" for r in summary]
    ax.set_xticks(x + 0.4 - width / 2, labels, rotation=20, ha="right")
    ax.set_ylim(min(0.0, *(r["kappa_mean"] for r in summary)), 1.08)
    folds = sorted({r["folds"] for r in summary})
    ax.set_title(f"spatial cross-validation ({'/'.join(map(str, folds))} folds of blocks): mean and std")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(frameon=False, fontsize=8, loc="lower left")
    return png_bytes(fig)
