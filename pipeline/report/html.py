"""The per-map HTML report: what the accuracy figures mean (the evaluation design), map and legend
(with the spatial test blocks outlined), confusion matrix, per-class and area tables (hectares and
km2 with 95 % intervals), training curves, clear observations per date, provenance. One
self-contained file, made from arrays and records (:class:`MapRecord`): the evaluate stage reads
the files (:func:`pipeline.evaluate.write_map_report`)."""

from __future__ import annotations

import base64
import datetime as dt
import html
import importlib.metadata
import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import GridError
from pipeline.reference.classes import ClassTable
from pipeline.report import figures

PACKAGES = ("numpy", "xarray", "dask", "zarr", "odc-stac", "rasterio", "pystac-client", "torch", "scikit-learn",
            "snakemake")
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.note{color:#555;font-size:0.9em}code{background:#f3f3f3;padding:1px 3px}
.design{font-size:1.05em}.warning{background:#fff4e5;border:1px solid #f0a030;padding:0.6em 1em;border-radius:4px}"""


def img(png: bytes, alt: str) -> str:
    """An <img> with the PNG embedded as a data URI."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def fmt(v: Any, digits: int = 3) -> str:
    """A number for a table cell ('-' when undefined; integers with thousands separators)."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return f"{int(v):,}"
    return f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v)


def fmt_count(v: Any) -> str:
    """A pixel count without decimals and with thousands separators ('-' when undefined)."""
    if v is None or not np.isfinite(float(v)):
        return "-"
    return f"{int(round(float(v))):,}"


def fmt_area(v: Any, ci: Any = None) -> str:
    """An area (ha or km2) with its 95 % half-width, digits by magnitude: '21,158 ± 6,158'."""
    if v is None or not np.isfinite(float(v)):
        return "-"
    size = max(abs(float(v)), abs(float(ci)) if ci is not None and np.isfinite(float(ci)) else 0.0)
    digits = 0 if size >= 100 else 1 if size >= 1 else 3
    text = f"{float(v):,.{digits}f}"
    return text if ci is None or not np.isfinite(float(ci)) else f"{text} ± {float(ci):,.{digits}f}"


def table_html(header: list[str], rows: list[list[Any]]) -> str:
    """An HTML table of formatted cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def provenance(item_ids: Sequence[str] | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Package versions, git revision, item ids and hashes of what a report was made from.

    ``item_ids``: the cube's ``item_ids`` per date (comma-joined STAC item ids), or None."""
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
    if item_ids is not None:
        out["stac_items"] = [i for ids in item_ids for i in str(ids).split(",") if i]
    out.update(extra or {})
    return out


def training_curves(rows: Sequence[Mapping[str, str]] | None) -> bytes | None:
    """Loss/accuracy curves from the rows of the model's metrics.csv (as read by
    ``csv.DictReader``), if there are any."""
    if not rows:
        return None
    epochs = np.array([float(r["epoch"]) for r in rows])
    series = {}
    for key in ("train_loss", "val_loss", "val_oa", "val_f1"):
        vals = [r.get(key) for r in rows]
        if all(v not in (None, "") for v in vals):
            series[key] = np.array([float(v) for v in vals])
    return figures.curves_png(epochs, series, title="training") if series else None


def blocks_sentence(design: dict[str, Any], evaluated_pixels: Any = None) -> str:
    """The plain sentence of a ``spatial_blocks`` design: test pixels, blocks, share, buffer."""
    size, labelled, blocks = design.get("block_size"), design.get("labelled_pixels"), design.get("test_blocks")
    test_px = design.get("test_pixels", evaluated_pixels)
    share = float(test_px) / labelled if labelled and test_px is not None else design.get("test_share")
    where = "test blocks" if blocks is None else f"{fmt_count(blocks)} test block{'' if blocks == 1 else 's'}"
    if size:
        where += f" of {size} x {size} px"
    if share is not None:
        where += f" ({share * 100:.0f} % of the labelled area)"
    buffer = design.get("buffer_px")
    if buffer:
        where += f" that no model saw in training, separated from the training pixels by a {buffer} px buffer"
    elif buffer == 0:
        where += " that no model saw in training, with no buffer to the training pixels (neighbours may be alike)"
    else:
        where += " that no model saw in training"
    if design.get("fold") is not None:
        where += f" (fold {design['fold']} of {design.get('folds')})"
    return f"Accuracy measured on {fmt_count(test_px)} reference pixels in {where}."


def design_sentence(design: dict[str, Any] | None, evaluated_pixels: Any = None) -> str:
    """One plain sentence (HTML) saying what the accuracy figures mean, from ``report["design"]``:
    ``kind`` ``"spatial_blocks"`` (held-out test blocks), ``"paper"`` (every reference pixel of
    the map date, in a warning box) or absent (old reports: not recorded, in a warning box)."""
    design = design or {}
    if design.get("kind") in ("spatial_blocks", "spatial_cv"):
        return f'<p class="design">{html.escape(blocks_sentence(design, evaluated_pixels))}</p>'
    if design.get("kind") == "paper":
        n = design.get("test_pixels", design.get("labelled_pixels", evaluated_pixels))
        count = f" ({fmt_count(n)} pixels)" if n is not None else ""
        text = (f"Accuracy measured on every reference pixel of the map date{count}, as in the paper: these "
                "locations were also used for training at other dates, so the figures are optimistic "
                "(close to a training accuracy).")
    else:
        text = (f"Accuracy measured on {fmt_count(evaluated_pixels)} reference pixels of the map date; this run "
                "did not record whether these locations were kept out of training, so the figures may be "
                "optimistic (close to a training accuracy).")
    return f'<p class="design warning">{html.escape(text)}</p>'


FRAMES = {
    "map": "drawn from the whole map",
    "test_blocks": "drawn only inside the spatial test blocks (never used for training)",
    "labelled_test_blocks": "drawn only at reference-labelled pixels inside the spatial test blocks (never used "
                            "for training)",
    "labelled_map": "drawn only at reference-labelled pixels of the map",
}


def frame_sentence(area: dict[str, Any]) -> str:
    """Where the Olofsson sample was drawn and what the estimates then assume (plain text)."""
    frame = str(area.get("frame", "map"))
    where = FRAMES.get(frame, f"drawn only inside the frame '{frame}'")
    text = f"Stratified random sample of {fmt_count(area.get('sample_size'))} pixels {where}"
    if frame != "map" and area.get("frame_pixels") is not None:
        text += (f" ({fmt_count(area['frame_pixels'])} mapped pixels); the strata weights are the whole map's, "
                 "so the error rates observed there are assumed to hold for each class across the map")
    text += f"; reference: {area.get('sample_reference', 'not recorded')}."
    if area.get("uninterpretable_units"):
        text += (f" {fmt_count(area['uninterpretable_units'])} sample unit(s) had no reference class and are "
                 "left out.")
    return text


def area_rows(area: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the area table: hectares and km2 with 95 % CI when the pixel area is
    known (old reports: pixels only), pixel counts without decimals, user's and producer's."""
    header = ["class"]
    in_units = "area_ha" in area and "area_km2" in area
    if in_units:
        header += ["mapped (ha)", "estimated (ha) ± 95 % CI", "estimated (km²) ± 95 % CI"]
    header += ["mapped px", "estimated px ± 95 % CI", "user's", "producer's"]
    rows = []
    for n in area["classes"]:
        row: list[Any] = [n]
        if in_units:
            row += [fmt_area(area.get("mapped_area_ha", {}).get(n)),
                    fmt_area(area["area_ha"][n], area["area_ha_ci95"][n]),
                    fmt_area(area["area_km2"][n], area["area_km2_ci95"][n])]
        row += [fmt_count(area["mapped_area_pixels"][n]),
                f"{fmt_count(area['area_pixels'][n])} ± {fmt_count(area['area_pixels_ci95'][n])}",
                area["users_accuracy"][n], area["producers_accuracy"][n]]
        rows.append(row)
    return header, rows


def area_section(area: dict[str, Any] | None) -> list[str]:
    """HTML parts of the Olofsson et al. (2014) section: the design and frame, then the table, or
    the reason when no estimate was possible (``available: false``); nothing without a sample."""
    if not area:
        return []
    parts = ["<h2>Area-adjusted estimates (Olofsson et al. 2014)</h2>"]
    if area.get("available", True) is False:
        reason = area.get("reason", "no reason recorded")
        return parts + [f'<p class="warning">No area-adjusted estimate: {html.escape(str(reason))}</p>']
    oa = f" Overall accuracy {fmt(area['overall_accuracy'])} ± {fmt(area['overall_accuracy_ci95'])} (95 %)."
    header, rows = area_rows(area)
    return parts + [f"<p>{html.escape(frame_sentence(area) + oa)}</p>", table_html(header, rows)]


def map_thumbnail(class_map: np.ndarray, test_mask: np.ndarray | None, *,
                  map_path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The class map (y, x) uint8 and the test mask (y, x) bool, both thinned to about 1024 px;
    GridError when the mask is not a bool mask of the map's grid (``map_path`` names the map)."""
    shape = class_map.shape
    step = max(1, max(shape) // 1024)
    if test_mask is None:
        return class_map[::step, ::step], None
    mask = np.asarray(test_mask)
    if mask.shape != shape or mask.dtype != bool:
        raise GridError(f"test_mask is {mask.dtype} {mask.shape} but the map {map_path} is {shape}; pass the bool "
                        "test-block mask of the map's grid (True inside the test blocks)")
    return class_map[::step, ::step], mask[::step, ::step]


def map_time_sentence(report: dict[str, Any], grid: dict[str, Any] | None) -> str:
    """What time the map shows: the period and the grid of composites it was classified from, or
    the map date (the paper's per-date protocol)."""
    period, when = report.get("map_period"), report.get("map_date", "?")
    if not period:
        return f"Map date {when}."
    text = f"Land cover of the period {period['start']} .. {period['end']}, classified from the window of steps ending {when}"
    if grid:
        text += (f" on a regular grid of {grid.get('period')} {grid.get('composite')} composites of the clear "
                 f"observations (gaps: {grid.get('fill')}; clear observations per step below)")
    return text + "."


@dataclass(frozen=True)
class MapRecord:
    """What the report of one map shows besides its accuracy dict.

    ``class_map``: (y, x) uint8 class ids of the map (0 = nodata), its whole grid;
    ``map_path``: the map file (its folder names the report; provenance) and ``map_sha256`` its
    hex digest; ``dates``: (time,) ``YYYY-MM-DD`` of the cube (or composite grid) the map was
    made from, ``clear_fraction``: (time,) float32 share of clear pixels per date (``valid_fraction``),
    ``item_ids``: (time,) comma-joined STAC item ids per date, ``time_grid``: the cube's
    ``time_grid`` attrs (None for a per-date cube); ``metrics``: the rows of the model's
    ``metrics.csv`` (strings), None without one.
    """

    class_map: np.ndarray
    map_path: Path
    map_sha256: str
    dates: list[str]
    clear_fraction: np.ndarray
    item_ids: list[str]
    time_grid: dict[str, Any] | None = None
    metrics: list[dict[str, str]] | None = None


def report_html(*, report: dict[str, Any], record: MapRecord, table: ClassTable,
                test_mask: np.ndarray | None = None) -> str:
    """The self-contained ``report.html`` of one map (the document text).

    ``report``: the accuracy dict of ``accuracy.json`` (``design`` and ``area_adjusted`` optional);
    ``test_mask``: optional (y, x) bool on the map's grid, True inside the spatial test blocks,
    outlined on the map image (GridError when it is not on the map's grid).
    """
    map_path = record.map_path
    class_map, mask = map_thumbnail(record.class_map, test_mask, map_path=map_path)
    names = table.names()
    evaluated = report.get("evaluated_pixels")
    map_png = figures.class_map_png(class_map, table.ids(), names, table.colors(), title="classes", outline=mask)
    parts = [f"<h1>Land-cover map: {html.escape(str(map_path.parent.name))}</h1>",
             design_sentence(report.get("design"), evaluated),
             (f"<p>{html.escape(map_time_sentence(report, record.time_grid))} Reference pixels "
              f"evaluated: {fmt_count(evaluated) if evaluated is not None else '?'}.</p>"),
             img(map_png, "map" if mask is None else "map with the test blocks outlined")]
    if mask is not None and mask.any():
        parts.append(f'<p class="note">Outlined in magenta: {html.escape(figures.TEST_BLOCKS_LABEL)}.</p>')
    parts += accuracy_section(report)
    parts += area_section(report.get("area_adjusted"))
    curves = training_curves(record.metrics)
    if curves:
        parts += ["<h2>Training</h2>", img(curves, "training curves")]
    parts += ["<h2>Clear observations per date</h2>",
              img(figures.clear_share_png(record.dates, record.clear_fraction, title="clear pixels in the AOI"),
                  "clear observations")]
    prov = provenance(record.item_ids, {"map": str(map_path), "map_sha256": record.map_sha256})
    parts += ["<h2>Provenance</h2>", f"<pre>{html.escape(json.dumps(prov, indent=1))}</pre>"]
    return f"<!doctype html><html><head><meta charset='utf-8'><title>Map report</title><style>{STYLE}</style>" \
           f"</head><body>{''.join(parts)}</body></html>"


def accuracy_section(report: dict[str, Any]) -> list[str]:
    """HTML parts of the pixel accuracy section: summary, per-class table, confusion matrix."""
    summary = [["overall accuracy", report["overall_accuracy"]], ["kappa", report["kappa"]],
               ["weighted F1", report["f1_weighted"]], ["quantity disagreement", report["quantity_disagreement"]],
               ["allocation disagreement", report["allocation_disagreement"]]]
    per_class = [[n, v["precision"], v["recall"], v["f1"], fmt_count(v["support"])]
                 for n, v in report["per_class"].items()]
    return ["<h2>Accuracy</h2>", table_html(["metric", "value"], summary),
            "<h3>Per class</h3>", table_html(["class", "precision", "recall", "F1", "support"], per_class),
            img(figures.confusion_png(report["confusion_matrix"], report["classes"], title="confusion matrix"),
                "confusion matrix")]
