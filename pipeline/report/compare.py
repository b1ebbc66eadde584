"""Stage ``report.compare``: the self-contained HTML report comparing models across the experiments.

``python -m pipeline.report.compare --tables results/experiments/compare.json
results/experiments/label_fraction.json --out results/experiments/report.html --options '{"claim_margin": 0.02}'``

Reads the experiment tables written by :mod:`pipeline.experiments` (each ``<name>.json`` with
its plot ``<name>.png`` beside it) and writes one HTML file with everything embedded: the
verdict on the paper's two claims computed from the numbers (:mod:`pipeline.report.claims`),
the model comparison (paper Table 1) with per-class F1, and the table and plot of every other
experiment given.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.atomic import write_text_atomic
from pipeline.cli import base_parser, run_stage
from pipeline.config import parse_options, reject_unknown
from pipeline.errors import AccuracyError, ConfigError
from pipeline.models.registry import SKLEARN_MODELS, display_label
from pipeline.report.claims import Claim, beats_baselines, loses_less_with_few_labels, overall
from pipeline.report.html import STYLE, img, provenance, table_html

log = logging.getLogger(__name__)

ORDER = ("compare", "label_fraction", "time_length", "cloud_cover")
TITLES = {"compare": "Model comparison (paper Table 1)", "label_fraction": "Labelled dates (paper Fig. 10)",
          "time_length": "Time series length t (paper Fig. 9)", "cloud_cover": "Scene cloud cover (paper Fig. 11)"}
VERDICT = {"holds": "HOLDS", "fails": "DOES NOT HOLD", "not evaluated": "NOT EVALUATED"}


@dataclass(frozen=True)
class ReportOptions:
    """claim_margin: how much less W-F1 the Semi-ConvLSTM must lose than the ConvLSTM at
    ``claim_fraction`` (share of labelled dates, 0.1 in the paper) for claim 2 to hold."""

    claim_margin: float = 0.02
    claim_fraction: float = 0.1

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ReportOptions:
        """Build from a mapping; unknown keys or out-of-range values raise ConfigError."""
        reject_unknown(options, set(cls.__dataclass_fields__), section="experiments")
        opts = cls(**options)
        if not isinstance(opts.claim_margin, int | float) or not 0 <= opts.claim_margin <= 1:
            raise ConfigError(f"experiments.claim_margin {opts.claim_margin!r} must be a number in [0, 1]")
        if not isinstance(opts.claim_fraction, int | float) or not 0 < opts.claim_fraction <= 1:
            raise ConfigError(f"claim_fraction {opts.claim_fraction!r} must be a number in (0, 1]")
        return opts


def load_tables(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """``{experiment: table JSON}`` of the given ``<name>.json`` files (the PNG path added as
    ``png`` when it exists next to the JSON)."""
    tables: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise AccuracyError(f"cannot read experiment table {path} ({exc}); rerun its target") from exc
        if not isinstance(doc, dict) or "experiment" not in doc or "rows" not in doc:
            raise AccuracyError(f"{path} is not an experiment table (no 'experiment'/'rows'); rerun its target")
        png = Path(path).with_suffix(".png")
        tables[doc["experiment"]] = {**doc, "png": png if png.is_file() else None}
    return tables


def evaluate_claims(tables: Mapping[str, Mapping[str, Any]], options: ReportOptions) -> dict[str, list[Claim]]:
    """The two claims per AOI from the ``compare`` and ``label_fraction`` tables (an absent
    table gives one ``not evaluated`` entry)."""
    out: dict[str, list[Claim]] = {}
    if "compare" in tables:
        out["beats_baselines"] = beats_baselines(tables["compare"]["rows"])
    else:
        out["beats_baselines"] = [Claim("beats_baselines", "-", "not evaluated", "Semi-ConvLSTM beats RF and SVM",
                                        "no compare table; run `snakemake compare`")]
    if "label_fraction" in tables:
        out["robust_to_few_labels"] = loses_less_with_few_labels(
            tables["label_fraction"]["rows"], fraction=options.claim_fraction, margin=options.claim_margin)
    else:
        out["robust_to_few_labels"] = [Claim(
            "robust_to_few_labels", "-", "not evaluated",
            "at 10 % of the labelled dates, Semi-ConvLSTM loses clearly less W-F1 than ConvLSTM",
            "no label_fraction table; run `snakemake label_fraction`")]
    return out


def claims_html(claims: Mapping[str, Sequence[Claim]]) -> str:
    """The claims section: one sentence per claim with its overall verdict, a table per AOI and
    the diagnosis of every claim that does not hold."""
    parts = ["<h2>The paper's claims on this run</h2>"]
    for items in claims.values():
        verdict = overall(items)
        parts.append(f"<p class='claim {verdict.replace(' ', '-')}'><b>{html.escape(items[0].statement)}</b>: "
                     f"<b>{VERDICT[verdict]}</b>.</p>")
    rows = [[c.statement, c.aoi, VERDICT[c.status], c.evidence] for items in claims.values() for c in items]
    parts.append(table_html(["claim", "AOI", "verdict", "numbers"], rows))
    for items in claims.values():
        for c in items:
            if c.status == "fails":
                lines = "".join(f"<li>{html.escape(d)}</li>" for d in c.diagnosis)
                parts.append(f"<h3>Why it does not hold ({html.escape(c.aoi)}): {html.escape(c.statement)}</h3>"
                             f"<ul>{lines}</ul>")
    return "".join(parts)


def _model(name: str) -> str:
    return display_label(name)


def compare_html(table: Mapping[str, Any]) -> str:
    """Table 1 layout (classifier, OA, K, W-F1 per AOI), per-class F1 and the bar chart."""
    rows = table["rows"]
    parts = []
    for aoi in dict.fromkeys(r["aoi"] for r in rows):
        sub = [r for r in rows if r["aoi"] == aoi]
        parts.append(f"<h3>{html.escape(aoi)}</h3>")
        parts.append(table_html(["classifier", "OA", "kappa", "W-F1", "evaluated px"],
                                [[_model(r["model"]), r["overall_accuracy"], r["kappa"], r["f1_weighted"],
                                  r.get("evaluated_pixels")] for r in sub]))
        classes = [c for c in sub[0]["per_class"] if any((r["per_class"].get(c, {}).get("support") or 0) > 0 for r in sub)]
        parts.append("<p class='note'>F1 per class (classes present in the reference):</p>")
        parts.append(table_html(["classifier", *classes],
                                [[_model(r["model"]), *(r["per_class"].get(c, {}).get("f1") for c in classes)]
                                 for r in sub]))
        trained = [r for r in sub if r.get("training")]
        if trained:
            parts.append("<p class='note'>Training runs (from the model cards; validation = the spatial validation "
                         "blocks of the training dates):</p>")
            parts.append(table_html(
                ["classifier", "best epoch", "epochs run", "stopped early", "validation OA", "search space"],
                [[_model(r["model"]), r["training"].get("best_epoch"), r["training"].get("epochs_run"),
                  str(bool(r["training"].get("stopped_early"))).lower(), r["training"].get("val_oa"),
                  json.dumps(r["training"].get("search_space")) if r["model"] in SKLEARN_MODELS else "-"]
                 for r in trained]))
    return "".join(parts)


def series_html(table: Mapping[str, Any]) -> str:
    """Table of a parameter experiment: AOI, model, value, OA, kappa, W-F1, dates."""
    rows = [[r["aoi"], _model(r["model"]), r["label"], r["overall_accuracy"], r["kappa"], r["f1_weighted"],
             r.get("dates")] for r in table["rows"]]
    return table_html(["AOI", "model", table.get("axis", "value"), "OA", "kappa", "W-F1", "dates"], rows)


def report_html(tables: Mapping[str, Mapping[str, Any]], options: ReportOptions) -> str:
    """The whole report as one HTML string (figures embedded as data URIs)."""
    if not tables:
        raise AccuracyError("no experiment table to report; run one of the targets compare, label_fraction, "
                            "time_length, cloud_cover first")
    parts = ["<h1>Experiments: model comparison</h1>",
             ("<p>Every model is trained on the same split (the last date held out; spatial validation blocks), "
              "mapped for the last date and evaluated against its reference labels. Tables are also written as "
              "CSV/JSON next to this file.</p>"), claims_html(evaluate_claims(tables, options))]
    for name in sorted(tables, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
        table = tables[name]
        parts.append(f"<h2>{html.escape(TITLES.get(name, name))}</h2>")
        parts.append(compare_html(table) if name == "compare" else series_html(table))
        if table.get("png") is not None:
            parts.append(img(Path(table["png"]).read_bytes(), f"{name} plot"))
    sources = {name: t.get("sources", []) for name, t in tables.items()}
    prov = provenance(None, {"runs": sources, "options": asdict(options)})
    parts += ["<h2>Provenance</h2>", f"<pre>{html.escape(json.dumps(prov, indent=1, default=str))}</pre>"]
    style = STYLE + ".claim.fails{color:#b2182b}.claim.holds{color:#1b7837}"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Experiments</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}</body></html>")


def write_compare_report(tables: Sequence[Path], out: Path, options: ReportOptions) -> Path:
    """Read the tables and write the report atomically."""
    write_text_atomic(out, report_html(load_tables(tables), options))
    log.info("wrote %s", out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--tables", required=True, nargs="+", type=Path, help="experiment tables <name>.json")
    parser.add_argument("--out", required=True, type=Path, help="report.html to write")
    parser.add_argument("--options", default="{}", help='report options as JSON, e.g. {"claim_margin": 0.02}')
    args = parser.parse_args(argv)

    def work() -> None:
        options = ReportOptions.from_options(parse_options(args.options, what="report.compare"))
        write_compare_report(args.tables, args.out, options)

    return run_stage(work, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
