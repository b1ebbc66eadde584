"""The paper's two headline claims, checked on the numbers of an experiment run. Pure functions.

1. *Beats the baselines* (section 4.2, Table 1): the Semi-ConvLSTM has a higher overall
   accuracy, kappa and weighted F1 than RF and SVM, on every AOI.
2. *Robust to few labels* (section 5.2, Fig. 10): when the labelled dates drop from 100 % to
   10 %, the Semi-ConvLSTM's weighted F1 falls clearly less than the supervised ConvLSTM's:
   ``loss_semi <= loss_convlstm - margin`` (loss = W-F1 at the full fraction minus W-F1 at the
   smallest fraction <= 10 %).

A claim per AOI is ``holds``, ``fails`` or ``not evaluated`` (runs missing); when it fails, the
diagnosis lists what the numbers show (which metric, which classes lose, whether the
supervised model loses at all), so the report says why instead of hiding it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.models.registry import short_label

Status = Literal["holds", "fails", "not evaluated"]
METRICS = ("overall_accuracy", "kappa", "f1_weighted")
_SHORT = {"overall_accuracy": "OA", "kappa": "kappa", "f1_weighted": "W-F1"}


@dataclass(frozen=True)
class Claim:
    """The verdict on one claim for one AOI: ``status``, the claim text, the numbers behind it
    (``evidence``) and, when it does not hold, what the numbers show (``diagnosis``)."""

    name: str
    aoi: str
    status: Status
    statement: str
    evidence: str
    diagnosis: tuple[str, ...] = field(default_factory=tuple)


def _name(model: str) -> str:
    return short_label(model)


def _aois(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    out: list[str] = []
    for r in rows:
        if r["aoi"] not in out:
            out.append(r["aoi"])
    return out


def class_losses(model_row: Mapping[str, Any], other_row: Mapping[str, Any], *, top: int = 3) -> list[str]:
    """The classes where ``model_row`` has a lower F1 than ``other_row``, largest support-weighted
    loss first: "forest: F1 0.81 vs 0.93 (22 % of the reference pixels)"."""
    pc, oc = model_row.get("per_class", {}), other_row.get("per_class", {})
    total = sum((v.get("support") or 0) for v in pc.values()) or 1
    losses = []
    for name, v in pc.items():
        support = v.get("support") or 0
        f1, other = v.get("f1"), oc.get(name, {}).get("f1")
        if support > 0 and f1 is not None and other is not None and f1 < other:
            losses.append(((other - f1) * support / total, name, f1, other, support / total))
    losses.sort(reverse=True)
    return [f"{n}: F1 {f:.3f} vs {o:.3f} ({s * 100:.0f} % of the reference pixels)" for _, n, f, o, s in losses[:top]]


def beats_baselines(rows: Sequence[Mapping[str, Any]], *, model: str = "semi_convlstm",
                    baselines: Sequence[str] = ("rf", "svm"), metrics: Sequence[str] = METRICS) -> list[Claim]:
    """Claim 1 per AOI from the ``compare`` rows (keys aoi, model, the metrics, per_class)."""
    statement = f"{_name(model)} beats {' and '.join(_name(b) for b in baselines)} ({', '.join(_SHORT[m] for m in metrics)})"
    out = []
    for aoi in _aois(rows):
        by_model = {r["model"]: r for r in rows if r["aoi"] == aoi}
        missing = [m for m in (model, *baselines) if m not in by_model]
        if missing:
            out.append(Claim("beats_baselines", aoi, "not evaluated", statement,
                             f"no run of {', '.join(missing)}; add them to experiments.models"))
            continue
        ours = by_model[model]
        parts, lost = [], []
        for m in metrics:
            others = ", ".join(f"{_name(b)} {by_model[b][m]:.3f}" for b in baselines)
            parts.append(f"{_SHORT[m]} {ours[m]:.3f} vs {others}")
            lost += [(m, b) for b in baselines if not ours[m] > by_model[b][m]]
        diagnosis: list[str] = []
        if lost:
            for m, b in lost:
                diagnosis.append(f"{_SHORT[m]}: {_name(model)} {ours[m]:.3f} is not above {_name(b)} "
                                 f"{by_model[b][m]:.3f} (difference {ours[m] - by_model[b][m]:+.3f})")
            best = max(baselines, key=lambda b: by_model[b]["f1_weighted"])
            losses = class_losses(ours, by_model[best])
            if losses:
                diagnosis.append(f"classes where {_name(model)} is below {_name(best)}: " + "; ".join(losses))
            line = _training_line(ours, _name(model))
            if line:
                diagnosis.append(line)
            note = consistency_note(ours)
            if note:
                diagnosis.append(note)
            if by_model[best]["f1_weighted"] >= 0.95:
                diagnosis.append(f"{_name(best)} already reaches W-F1 {by_model[best]['f1_weighted']:.3f}: the classes "
                                 "are separable pixel by pixel from the features of the window, which leaves the "
                                 "spatial context and the consistency term of the Semi-ConvLSTM little to add")
        out.append(Claim("beats_baselines", aoi, "fails" if lost else "holds", statement, "; ".join(parts),
                         tuple(diagnosis)))
    return out


def loses_less_with_few_labels(rows: Sequence[Mapping[str, Any]], *, model: str = "semi_convlstm",
                               supervised: str = "convlstm", metric: str = "f1_weighted", fraction: float = 0.1,
                               margin: float = 0.02) -> list[Claim]:
    """Claim 2 per AOI from the ``label_fraction`` rows (keys aoi, model, value = label fraction,
    the metric, per_class): ``loss(model) <= loss(supervised) - margin`` between the largest
    fraction and the smallest fraction <= ``fraction`` that both models ran."""
    statement = (f"at {fraction * 100:g} % of the labelled dates, {_name(model)} loses clearly less {_SHORT[metric]} "
                 f"than {_name(supervised)} (by at least {margin:g})")
    out = []
    for aoi in _aois(rows):
        runs = {(r["model"], r["value"]): r for r in rows if r["aoi"] == aoi}
        common = sorted({v for (m, v) in runs if m == model} & {v for (m, v) in runs if m == supervised})
        low = [v for v in common if v <= fraction + 1e-9]
        if not low or len(common) < 2:
            out.append(Claim("robust_to_few_labels", aoi, "not evaluated", statement,
                             f"needs runs of {_name(model)} and {_name(supervised)} at 100 % and at <= {fraction * 100:g} % "
                             f"of the labels (common fractions: {common}); add them to experiments.label_fraction.values "
                             f"and experiments.label_fraction.models"))
            continue
        hi, lo = common[-1], low[0]
        ours = runs[(model, hi)][metric], runs[(model, lo)][metric]
        sup = runs[(supervised, hi)][metric], runs[(supervised, lo)][metric]
        loss_ours, loss_sup = ours[0] - ours[1], sup[0] - sup[1]
        holds = loss_ours <= loss_sup - margin
        evidence = (f"{_SHORT[metric]} {hi * 100:g} % -> {lo * 100:g} %: {_name(model)} {ours[0]:.3f} -> {ours[1]:.3f} "
                    f"(loss {loss_ours:+.3f}), {_name(supervised)} {sup[0]:.3f} -> {sup[1]:.3f} (loss {loss_sup:+.3f}); "
                    f"margin {margin:g}")
        diagnosis: list[str] = []
        if not holds:
            if loss_sup < margin:
                diagnosis.append(f"{_name(supervised)} itself loses only {loss_sup:+.3f} {_SHORT[metric]} at "
                                 f"{lo * 100:g} % of the labels (less than the margin {margin:g}): removing labelled "
                                 f"dates hardly hurts the supervised model on this data, so there is no gap for the "
                                 f"consistency loss to close")
            if loss_ours > loss_sup:
                diagnosis.append(f"{_name(model)} loses more than {_name(supervised)} "
                                 f"({loss_ours:+.3f} vs {loss_sup:+.3f})")
            elif loss_sup >= margin:
                diagnosis.append(f"{_name(model)} loses {loss_ours:+.3f}, only {loss_sup - loss_ours:.3f} less than "
                                 f"{_name(supervised)} (margin {margin:g})")
            losses = class_losses(runs[(model, lo)], runs[(supervised, lo)])
            if losses:
                diagnosis.append(f"classes where {_name(model)} is below {_name(supervised)} at {lo * 100:g} %: "
                                 + "; ".join(losses))
            diagnosis += training_notes(runs[(model, lo)], runs[(supervised, lo)], fraction=lo)
        out.append(Claim("robust_to_few_labels", aoi, "holds" if holds else "fails", statement, evidence,
                         tuple(diagnosis)))
    return out


def _training_line(row: Mapping[str, Any], what: str) -> str | None:
    t = row.get("training") or {}
    if t.get("best_epoch") is None:
        return None
    val = t.get("val_oa")
    val_text = f", validation OA {val:.3f}" if isinstance(val, int | float) and math.isfinite(val) else ""
    stop = " (stopped early)" if t.get("stopped_early") else ""
    budget = ""
    if not t.get("stopped_early") and t["best_epoch"] == t.get("epochs_run") == t.get("epochs"):
        budget = (" - still improving when the epoch budget ran out (train.epochs): more epochs may change "
                  "the ranking")
    return f"{what}: best epoch {t['best_epoch']} of {t.get('epochs_run')} run{stop}{val_text}{budget}"


def ramp_weight(epoch: int, *, w_max: float, rampup_epochs: int) -> float:
    """The consistency weight the training used at 0-based ``epoch``: the Gaussian ramp of
    :func:`pipeline.training.losses.rampup_weight`, restated here so that reports need no torch."""
    if w_max == 0.0:
        return 0.0
    if rampup_epochs <= 0:
        return float(w_max)
    if epoch <= 0:
        return 0.0
    t = min(epoch / rampup_epochs, 1.0)
    return float(w_max * math.exp(-5.0 * (1.0 - t) ** 2))


def consistency_note(row: Mapping[str, Any]) -> str | None:
    """For a Semi-ConvLSTM run that stopped improving during or right after the ramp-up of the
    consistency weight: the weight at its best epoch and what it suggests."""
    t = row.get("training") or {}
    best, run, w_max, ramp = t.get("best_epoch"), t.get("epochs_run"), t.get("consistency_weight"), t.get("rampup_epochs")
    if row.get("model") != "semi_convlstm" or None in (best, run, w_max, ramp) or best >= run:
        return None
    w_best = ramp_weight(int(best) - 1, w_max=float(w_max), rampup_epochs=int(ramp))
    if best > int(ramp) + 1:
        return None
    share = t.get("labelled_share")
    scaled = t.get("consistency_scaling") == "labelled_share" and isinstance(share, int | float)
    weight = (f"{w_best:.2g} of w_max={float(w_max):g} (times the labelled share {share:.3g} of the epoch's pixels: "
              f"{w_best * share:.2g})" if scaled else f"{w_best:.2g} of w_max={float(w_max):g}")
    lever = ("a smaller train.convlstm.consistency_weight or a longer rampup_epochs is the lever, not the data" if scaled else
             "train.convlstm.consistency_scaling: labelled_share (the Pi-model's w_max * M/N), a smaller "
             "train.convlstm.consistency_weight or a longer rampup_epochs is the lever, not the data")
    return (f"{_name(row['model'])}: the validation loss stopped improving at epoch {best}, when the ramped "
            f"consistency weight was {weight}, and did not improve in the {run - best} epoch(s) after it: once the "
            f"consistency term weighs as much as the focal loss of the few labelled pixels, it holds the supervised fit "
            f"back (the supervised loss rises again in metrics.csv); {lever}")


def training_notes(model_row: Mapping[str, Any], supervised_row: Mapping[str, Any], *, fraction: float) -> list[str]:
    """What the model cards say about the two training runs at ``fraction`` of the labels (rows
    with a ``training`` entry, see :func:`pipeline.report.experiment_tables.training_facts`)."""
    notes = [line for line in (
        _training_line(model_row, f"{_name(model_row['model'])} at {fraction * 100:g} %"),
        _training_line(supervised_row, f"{_name(supervised_row['model'])} at {fraction * 100:g} %")) if line]
    facts = model_row.get("training") or {}
    cap, epochs = facts.get("max_windows_per_epoch"), facts.get("epochs")
    if cap and model_row["model"] == "semi_convlstm":
        ratio = facts.get("unlabelled_window_ratio")
        extra = (f" plus {ratio:g} times as many windows without a label (consistency term only)"
                 if isinstance(ratio, int | float) else "")
        notes.append(f"training budget: both models see at most max_windows_per_epoch={cap} windows holding a "
                     f"label per epoch ({epochs} epochs), the Semi-ConvLSTM{extra}: the supervised budgets are equal")
    note = consistency_note(model_row)
    if note:
        notes.append(note)
    return notes


def overall(claims: Sequence[Claim]) -> Status:
    """One verdict over AOIs: ``fails`` if any AOI fails, ``not evaluated`` if none was
    evaluated or some were not, else ``holds``."""
    statuses = {c.status for c in claims}
    if "fails" in statuses:
        return "fails"
    if not claims or "not evaluated" in statuses:
        return "not evaluated"
    return "holds"
