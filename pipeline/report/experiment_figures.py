"""Plots of the experiment tables (matplotlib Agg, PNG bytes). Pure: rows in, bytes out.

``rows`` are the rows of :func:`pipeline.report.experiment_tables.build_table` (keys ``aoi``, ``model``,
``value``, ``label``, ``overall_accuracy``, ``kappa``, ``f1_weighted``, ``dates``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pipeline.models.registry import display_label

if TYPE_CHECKING:
    from pipeline.report.experiment_tables import Experiment

METRIC_LABELS = {"overall_accuracy": "OA", "kappa": "kappa", "f1_weighted": "W-F1"}


def png_bytes(fig: plt.Figure) -> bytes:
    """The figure as PNG bytes (and closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _unique(values: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def compare_png(rows: Sequence[Mapping[str, Any]], *, metrics: Sequence[str], title: str) -> bytes:
    """Grouped bars, one panel per AOI: models on the x axis, one bar per metric (values written
    on the bars). Metrics are unitless in [-1, 1] (kappa) or [0, 1]."""
    aois = _unique([r["aoi"] for r in rows])
    fig, axes = plt.subplots(1, len(aois), figsize=(max(5.0, 1.3 * len(rows) / len(aois) + 1.5) * len(aois), 3.4),
                             squeeze=False)
    width = 0.8 / len(metrics)
    for ax, aoi in zip(axes[0], aois, strict=True):
        sub = [r for r in rows if r["aoi"] == aoi]
        x = np.arange(len(sub))
        for k, metric in enumerate(metrics):
            vals = [r[metric] for r in sub]
            bars = ax.bar(x + k * width, vals, width, label=METRIC_LABELS.get(metric, metric))
            ax.bar_label(bars, labels=[f"{v:.2f}" for v in vals], fontsize=6, padding=1)
        ax.set_xticks(x + 0.4 - width / 2, [display_label(r["model"]) for r in sub],
                      rotation=20, ha="right")
        ax.set_ylim(min(0.0, *(r["kappa"] for r in sub)) if "kappa" in metrics else 0.0, 1.08)
        ax.set_title(f"{title} - {aoi}")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(frameon=False, fontsize=8, loc="lower left")
    return png_bytes(fig)


def series_png(rows: Sequence[Mapping[str, Any]], *, metric: str, axis: str, title: str,
               show_dates: bool = False) -> bytes:
    """Lines, one panel per AOI: the parameter values (in row order, categorical) on the x axis,
    one line per model, ``metric`` on the y axis; ``show_dates`` writes the dates of each run."""
    aois = _unique([r["aoi"] for r in rows])
    fig, axes = plt.subplots(1, len(aois), figsize=(5.5 * len(aois), 3.4), squeeze=False)
    for ax, aoi in zip(axes[0], aois, strict=True):
        sub = [r for r in rows if r["aoi"] == aoi]
        labels = _unique([r["label"] for r in sub])
        for model in _unique([r["model"] for r in sub]):
            pts = [(labels.index(r["label"]), r[metric], r.get("dates")) for r in sub if r["model"] == model]
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            ax.plot(xs, ys, marker="o", label=display_label(model))
            if show_dates:
                for x, y, n in pts:
                    if n is not None:
                        ax.annotate(f"{n} dates", (x, y), textcoords="offset points", xytext=(0, 6), fontsize=7,
                                    ha="center")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(axis)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.set_title(f"{title} - {aoi}")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    return png_bytes(fig)


def experiment_png(experiment: Experiment, rows: Sequence[Mapping[str, Any]]) -> bytes:
    """The plot of one experiment table: bars for ``compare`` (paper Table 1), lines of the
    experiment's metric against its parameter for the others (Fig. 9, 10, 11)."""
    title = experiment.name.replace("_", " ")
    if experiment.parameter is None:
        return compare_png(rows, metrics=experiment.metrics, title=title)
    return series_png(rows, metric=experiment.metrics[0], axis=experiment.axis, title=title,
                      show_dates=experiment.name == "cloud_cover")
