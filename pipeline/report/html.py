"""The per-map HTML report: map and legend, confusion matrix, per-class and area tables,
training curves, clear observations per date, provenance. One self-contained file."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import html
import importlib.metadata
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import xarray as xr

from pipeline.atomic import write_text_atomic
from pipeline.reference.classes import ClassTable
from pipeline.report import figures

log = logging.getLogger(__name__)

PACKAGES = ("numpy", "xarray", "dask", "zarr", "odc-stac", "rasterio", "pystac-client", "torch", "scikit-learn",
            "snakemake")
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.note{color:#555;font-size:0.9em}code{background:#f3f3f3;padding:1px 3px}"""


def img(png: bytes, alt: str) -> str:
    """An <img> with the PNG embedded as a data URI."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def fmt(v: Any, digits: int = 3) -> str:
    """A number for a table cell ('-' when undefined)."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def table_html(header: list[str], rows: list[list[Any]]) -> str:
    """An HTML table of formatted cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def provenance(cube: xr.Dataset | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Package versions, git revision, item ids and hashes of what a report was made from."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except OSError:
        rev = "unknown"
    out: dict[str, Any] = {"generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                           "git_revision": rev, "packages": versions}
    if cube is not None:
        out["stac_items"] = [i for ids in cube["item_ids"].values.tolist() for i in str(ids).split(",") if i]
    out.update(extra or {})
    return out


def training_curves(model_dir: Path | None) -> bytes | None:
    """Loss/accuracy curves from the model's metrics.csv, if there is one."""
    if model_dir is None or not (model_dir / "metrics.csv").is_file():
        return None
    with open(model_dir / "metrics.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    epochs = np.array([float(r["epoch"]) for r in rows])
    series = {}
    for key in ("train_loss", "val_loss", "val_oa", "val_f1"):
        vals = [r.get(key) for r in rows]
        if all(v not in (None, "") for v in vals):
            series[key] = np.array([float(v) for v in vals])
    return figures.curves_png(epochs, series, title="training") if series else None


def write_report(path: Path, *, report: dict[str, Any], map_path: Path, cube_path: Path, model_dir: Path | None,
                 table: ClassTable) -> Path:
    """Write the self-contained ``report.html`` of one map."""
    with rasterio.open(map_path) as src:
        step = max(1, max(src.height, src.width) // 1024)
        class_map = src.read(1)[::step, ::step]
    cube = xr.open_zarr(cube_path)
    names = table.names()
    parts = [f"<h1>Land-cover map: {html.escape(str(map_path.parent.name))}</h1>",
             f"<p>Map date {report.get('map_date', '?')}; reference pixels evaluated: "
             f"{report.get('evaluated_pixels', '?')}.</p>",
             img(figures.class_map_png(class_map, table.ids(), names, table.colors(), title="classes"), "map")]
    summary = [["overall accuracy", report["overall_accuracy"]], ["kappa", report["kappa"]],
               ["weighted F1", report["f1_weighted"]], ["quantity disagreement", report["quantity_disagreement"]],
               ["allocation disagreement", report["allocation_disagreement"]]]
    parts += ["<h2>Accuracy</h2>", table_html(["metric", "value"], summary)]
    per_class = [[n, v["precision"], v["recall"], v["f1"], v["support"]] for n, v in report["per_class"].items()]
    parts += ["<h3>Per class</h3>", table_html(["class", "precision", "recall", "F1", "support"], per_class),
              img(figures.confusion_png(report["confusion_matrix"], report["classes"], title="confusion matrix"),
                  "confusion matrix")]
    area = report.get("area_adjusted")
    if area:
        rows = [[n, area["mapped_area_pixels"][n], area["area_pixels"][n], area["area_pixels_ci95"][n],
                 area["users_accuracy"][n], area["producers_accuracy"][n]] for n in area["classes"]]
        parts += ["<h2>Area-adjusted estimates (Olofsson et al. 2014)</h2>",
                  f"<p>Stratified random sample of {area['sample_size']} pixels drawn from the map "
                  f"(reference: {html.escape(str(area.get('sample_reference')))}); overall accuracy "
                  f"{fmt(area['overall_accuracy'])} &plusmn; {fmt(area['overall_accuracy_ci95'])} (95 %).</p>",
                  table_html(["class", "mapped px", "estimated px", "95 % CI (px)", "user's", "producer's"], rows)]
    curves = training_curves(model_dir)
    if curves:
        parts += ["<h2>Training</h2>", img(curves, "training curves")]
    dates = [str(t)[:10] for t in cube.time.values]
    parts += ["<h2>Clear observations per date</h2>",
              img(figures.clear_share_png(dates, cube["valid_fraction"].values, title="clear pixels in the AOI"),
                  "clear observations")]
    prov = provenance(cube, {"map": str(map_path), "map_sha256": hashlib.sha256(map_path.read_bytes()).hexdigest()})
    parts += ["<h2>Provenance</h2>", f"<pre>{html.escape(json.dumps(prov, indent=1))}</pre>"]
    doc = f"<!doctype html><html><head><meta charset='utf-8'><title>Map report</title><style>{STYLE}</style>" \
          f"</head><body>{''.join(parts)}</body></html>"
    write_text_atomic(path, doc)
    log.info("wrote %s", path)
    return path
