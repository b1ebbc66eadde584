"""Stage ``evaluate``: accuracy of a map against reference labels -> ``accuracy.json`` + report.

``python -m pipeline.evaluate --map results/demo/maps/semi_convlstm/classes.tif --cube results/demo/cube.zarr
--labels results/demo/labels.zarr --classes '<classes JSON>' --options '<evaluation JSON>'
--model results/demo/models/semi_convlstm --out results/demo/reports/semi_convlstm [--fold K]``

The reference is ``labels.zarr``'s ``reference`` (every label of the source, no scarcity): for a
map of a period (``--target``) the latest label of each pixel within the period, for the paper's
per-date protocol that of the last date. Which reference pixels are scored follows
the AOI's test design (``labels.zarr`` ``split``, :mod:`pipeline.split.design`): with
``spatial_blocks`` (default) only the pixels of the test blocks, which no model trained or
validated on at any date; with ``--fold K`` the blocks of cross-validation fold K; with
``paper`` every reference pixel of the map date (locations seen in training at other dates
included, as in the paper). Metrics count only pixels labelled in the reference and mapped
(0 is nodata in both). Area-adjusted accuracy and error-adjusted areas (Olofsson et al. 2014)
come from a stratified random sample of the map drawn inside the test blocks (the whole map for
``paper``), written as ``sample.gpkg`` for labelling in QGIS, interpreted either from the
reference labels (``sample_reference: labels``) or from a labelled GeoPackage
(``sample_reference: file``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import xarray as xr

from pipeline.accuracy.area import try_area_adjusted, unavailable_estimate
from pipeline.accuracy.metrics import accuracy_report
from pipeline.accuracy.sampling import StratifiedSample, draw_stratified_sample
from pipeline.atomic import atomic_path, write_text_atomic
from pipeline.cli import base_parser, run_stage
from pipeline.config import parse_options, reject_unknown
from pipeline.errors import AccuracyError, ConfigError, GridError
from pipeline.raster.object_store import store_path
from pipeline.raster.zarr_io import open_store
from pipeline.reference.classes import ClassTable
from pipeline.split.blocks import block_index
from pipeline.split.design import TEST, region_from_store
from pipeline.timegrid.period import TargetOptions, map_period, map_step, period_steps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationOptions:
    """The ``evaluation`` config section: the test design (applied by the labels stage, which
    stores it in labels.zarr) and the sample design of the area-adjusted estimates."""

    design: Literal["spatial_blocks", "paper"] = "spatial_blocks"
    block_size: int | None = None
    test_share: float = 0.3
    buffer: int | None = None
    folds: int = 5
    target_se: float = 0.01
    expected_users_accuracy: float = 0.85
    sample_size: int | None = None
    min_per_stratum: int = 50
    sample_reference: Literal["labels", "file", "none"] = "labels"
    sample_file: str | None = None
    seed: int = 0

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> EvaluationOptions:
        """Build from the config section; unknown keys raise ConfigError."""
        reject_unknown(options, set(cls.__dataclass_fields__), section="evaluation")
        opts = cls(**options)
        if opts.sample_reference == "file" and not opts.sample_file:
            raise ConfigError("evaluation.sample_reference is 'file' but evaluation.sample_file is not set; "
                              "give the labelled GeoPackage (a 'reference' column of class ids or names)")
        return opts


def read_class_map(path: Path, attrs: dict[str, Any]) -> np.ndarray:
    """The class ids (y, x) uint8 (0 = nodata) of the map GeoTIFF at ``path``, checked against the
    grid (``crs``, ``transform``) in ``attrs`` (the labels store's, i.e. the cube's)."""
    with rasterio.open(path) as src:
        data = src.read(1)
        if src.crs is None or src.crs.to_string() != rasterio.crs.CRS.from_user_input(attrs["crs"]).to_string():
            raise GridError(f"{path} is in {src.crs}, the cube in {attrs['crs']}; predict again from this cube")
        if not np.allclose(list(src.transform)[:6], attrs["transform"]):
            raise GridError(f"{path} transform {list(src.transform)[:6]} differs from the cube's {attrs['transform']}")
    return data


def reference_at(labels: xr.Dataset, when: np.datetime64) -> np.ndarray:
    """Reference class ids (y, x) uint8 of date ``when``: ``labels.zarr``'s ``reference``."""
    times = labels.time.values
    i = int(np.argmin(np.abs(times - when)))
    if times[i].astype("datetime64[D]") != np.datetime64(when, "D"):
        raise AccuracyError(f"no reference labels for the map date {str(when)[:10]}; label that date to evaluate")
    ref = np.asarray(labels["reference"].isel(time=i).values)
    if not (ref > 0).any():
        raise AccuracyError(f"no reference labels for the map date {str(when)[:10]} (the label source labels no "
                            f"pixel of that date); label that date to evaluate the map")
    return ref


def reference_of_period(labels: xr.Dataset, steps: np.ndarray, period: tuple[np.datetime64, np.datetime64]) -> np.ndarray:
    """Reference class ids (y, x) uint8 of a period map: per pixel, the label of the latest step of
    the period (``steps``, (time,) bool) that labels it (static labels: the same at every step;
    dated labels: the last survey of the period)."""
    ref = np.zeros(labels["reference"].shape[1:], dtype=np.uint8)
    for i in np.flatnonzero(steps):  # chronological: later labels win
        layer = np.asarray(labels["reference"].isel(time=int(i)).values)
        np.copyto(ref, layer, where=layer > 0)
    if not (ref > 0).any():
        raise AccuracyError(f"no reference labels in the map period {period[0]} .. {period[1]}; label that period "
                            f"(labels.static: true for one land-cover map) or set predict.period to a labelled one")
    return ref


def scored_pixels(reference: np.ndarray, region: np.ndarray, record: dict[str, Any]) -> np.ndarray:
    """(y, x) bool: the reference pixels the design scores (test blocks; every one for ``paper``)."""
    labelled = reference > 0
    return labelled if record["kind"] == "paper" else labelled & (region == TEST)


def design_summary(record: dict[str, Any], region: np.ndarray, reference: np.ndarray, scored: np.ndarray,
                   class_map: np.ndarray) -> dict[str, Any]:
    """The ``design`` section of ``accuracy.json``: the test design and the pixels it scored."""
    out = {k: record.get(k) for k in ("kind", "block_size", "test_share", "buffer_px", "fold", "folds", "seed")}
    test = region == TEST
    blocks = block_index(region.shape, int(record["block_size"]))
    out["test_blocks"] = 0 if record["kind"] == "paper" else int(np.unique(blocks[test]).size)
    out["labelled_pixels"] = int((reference > 0).sum())
    out["test_pixels"] = int((scored & (class_map > 0)).sum())
    # reference pixels the map leaves as nodata (no clear observation in the map's window): not scored, counted
    out["unmapped_test_pixels"] = int((scored & (class_map == 0)).sum())
    if record["kind"] == "paper":
        out["note"] = "every reference pixel of the map date: locations used for training at other dates included"
    return out


def sample_frame(reference: np.ndarray, region: np.ndarray, record: dict[str, Any],
                 options: EvaluationOptions) -> tuple[np.ndarray | None, str]:
    """Where the area sample may fall, (y, x) bool or None (anywhere), and the frame's name: the
    test blocks of the design (the whole map for ``paper``), restricted to labelled pixels when the
    units are interpreted from the reference labels (a unit off the labels could not be)."""
    test = None if record["kind"] == "paper" else region == TEST
    if options.sample_reference != "labels":
        return test, "map" if test is None else "test_blocks"
    labelled = reference > 0
    return (labelled, "labelled_map") if test is None else (test & labelled, "labelled_test_blocks")


def area_estimate(class_map: np.ndarray, reference: np.ndarray, within: np.ndarray | None, frame: str,
                  table: ClassTable, options: EvaluationOptions, attrs: dict[str, Any],
                  out_dir: Path) -> dict[str, Any]:
    """Olofsson et al. 2014 area-adjusted accuracy from a stratified sample of the map drawn inside
    ``within`` (``sample.gpkg`` written for QGIS); when no estimate is possible the section says why
    instead of stopping the report."""
    res = float(abs(attrs["transform"][0]))
    try:
        sample = draw_stratified_sample(
            class_map, class_ids=table.ids(), seed=options.seed, expected_users_accuracy=options.expected_users_accuracy,
            target_se=options.target_se, sample_size=options.sample_size, min_per_stratum=options.min_per_stratum,
            within=within, frame=frame)
        ref = sample_reference(sample, reference, table, options, attrs)
        estimate = try_area_adjusted(sample, ref, table, pixel_area_ha=res * res / 1e4)
        write_sample(sample, ref, out_dir / "sample.gpkg", attrs, table)
    except AccuracyError as err:  # e.g. no mapped pixel inside the frame
        log.warning("no area-adjusted estimate: %s", err)
        estimate = unavailable_estimate(str(err), frame=frame)
    estimate["sample_reference"] = options.sample_reference
    return estimate


def sample_reference(sample: StratifiedSample, reference: np.ndarray, table: ClassTable,
                     options: EvaluationOptions, attrs: dict[str, Any]) -> np.ndarray:
    """Reference class id of every sample unit (0 = could not be interpreted)."""
    if options.sample_reference == "labels":
        return reference[sample.rows, sample.cols]
    import geopandas as gpd

    frame = gpd.read_file(options.sample_file)
    if "reference" not in frame.columns or "row" not in frame.columns:
        raise AccuracyError(f"{options.sample_file} needs the columns 'row', 'col' and 'reference' "
                            f"(start from the sample.gpkg this stage writes)")
    lookup = {(int(r), int(c)): v for r, c, v in zip(frame["row"], frame["col"], frame["reference"], strict=True)}
    names = {n: i for i, n in zip(table.ids(), table.names(), strict=True)}
    out = []
    for r, c in zip(sample.rows, sample.cols, strict=True):
        v = lookup.get((int(r), int(c)))
        out.append(names.get(v, v) if isinstance(v, str) else (0 if v is None else int(v)))
    return np.asarray(out, dtype=np.int64)


def write_sample(sample: StratifiedSample, ref: np.ndarray, path: Path, attrs: dict[str, Any], table: ClassTable) -> None:
    """GeoPackage of the sample points (pixel centres) with map class and reference, for QGIS."""
    import geopandas as gpd
    from affine import Affine

    t = Affine(*attrs["transform"])
    xs, ys = t * (sample.cols + 0.5, sample.rows + 0.5)
    names = dict(zip(table.ids(), table.names(), strict=True))
    frame = gpd.GeoDataFrame(
        {"row": sample.rows, "col": sample.cols, "map_class": [names[int(s)] for s in sample.stratum],
         "map_id": sample.stratum, "reference": ref},
        geometry=gpd.points_from_xy(xs, ys), crs=attrs["crs"],
    )
    with atomic_path(path) as tmp:
        frame.to_file(tmp, driver="GPKG", layer="sample")


def evaluate(map_path: Path, labels_path: str | Path, table: ClassTable, options: EvaluationOptions, out_dir: Path,
             *, fold: int | None = None,
             target: TargetOptions | None = None) -> tuple[dict[str, Any], np.ndarray | None]:
    """Compute and write ``accuracy.json`` (+ ``sample.gpkg``) of the map at ``map_path`` against
    the labels store at ``labels_path`` under its test design (cross-validation fold ``fold``), at
    the step the map was made for (``target``, default the last date); return the accuracy dict
    and the test blocks ((y, x) bool; None for the paper design)."""
    labels = open_store(labels_path, required=("reference",))
    class_map = read_class_map(map_path, labels.attrs)
    target = target or TargetOptions(target="last_date")
    times = labels.time.values
    when = times[map_step(times, target, attrs=labels.attrs)]
    if target.target == "period":
        period = map_period(times, target, labels.attrs)
        reference = reference_of_period(labels, period_steps(times, *period), period)
    else:
        reference = reference_at(labels, when)
    region, record = region_from_store(labels, fold=fold)
    scored = scored_pixels(reference, region, record)
    if not scored.any():
        raise AccuracyError(f"the test blocks hold no reference pixel of the map date {str(when)[:10]}; change "
                            f"evaluation.seed or evaluation.block_size, or label that date in the test blocks")
    report = accuracy_report(np.where(scored, reference, 0).astype(reference.dtype), class_map, table)
    report["map_date"] = str(when)[:10]
    if target.target == "period":
        report["map_period"] = {"start": str(period[0]), "end": str(period[1])}
    report["design"] = design_summary(record, region, reference, scored, class_map)
    report["evaluated_pixels"] = report["design"]["test_pixels"]
    if report["design"]["unmapped_test_pixels"]:
        log.warning("%d test pixel(s) are nodata in the map (no clear observation in its window) and are not scored",
                    report["design"]["unmapped_test_pixels"])
    out_dir.mkdir(parents=True, exist_ok=True)
    if options.sample_reference != "none":
        within, frame = sample_frame(reference, region, record, options)
        report["area_adjusted"] = area_estimate(class_map, reference, within, frame, table, options, labels.attrs,
                                                out_dir)
    write_text_atomic(out_dir / "accuracy.json", json.dumps(report, indent=1, allow_nan=False))
    log.info("OA %.3f, kappa %.3f, weighted F1 %.3f on %d pixels", report["overall_accuracy"], report["kappa"],
             report["f1_weighted"], report["evaluated_pixels"])
    return report, None if record["kind"] == "paper" else region == TEST


def read_training_metrics(model_dir: Path | None) -> list[dict[str, str]] | None:
    """The rows of ``model_dir/metrics.csv`` (strings, as ``csv.DictReader`` reads them), or None
    without a model folder or that file."""
    if model_dir is None or not (model_dir / "metrics.csv").is_file():
        return None
    with open(model_dir / "metrics.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_map_report(path: Path, *, report: dict[str, Any], map_path: Path, cube_path: str | Path,
                     model_dir: Path | None, table: ClassTable, test_mask: np.ndarray | None = None) -> Path:
    """Write the self-contained ``report.html`` of one map (:mod:`pipeline.report.html`): reads
    the map ``map_path`` (classes.tif), the clear observations and item ids per date of the cube
    or composite grid ``cube_path`` and the training curves of ``model_dir`` (optional).

    ``report``: the accuracy dict of ``accuracy.json``; ``test_mask``: optional (y, x) bool on the
    map's grid, True inside the spatial test blocks, outlined on the map image.
    """
    # matplotlib is imported only when a report is written
    from pipeline.report.html import MapRecord, report_html

    with rasterio.open(map_path) as src:
        class_map = src.read(1)
    cube = xr.open_zarr(cube_path)
    record = MapRecord(class_map=class_map, map_path=map_path,
                       map_sha256=hashlib.sha256(map_path.read_bytes()).hexdigest(),
                       dates=[str(t)[:10] for t in cube.time.values], clear_fraction=cube["valid_fraction"].values,
                       item_ids=cube["item_ids"].values.tolist(), time_grid=cube.attrs.get("time_grid"),
                       metrics=read_training_metrics(model_dir))
    write_text_atomic(path, report_html(report=report, record=record, table=table, test_mask=test_mask))
    log.info("wrote %s", path)
    return path


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--map", required=True, type=Path, help="classes.tif of the map")
    parser.add_argument("--cube", required=True, type=store_path,
                        help="cube.zarr (clear observations per date for the report; path or fsspec URL)")
    parser.add_argument("--labels", required=True, type=store_path,
                        help="labels.zarr (reference labels and test design; path or fsspec URL)")
    parser.add_argument("--target", default='{"target": "last_date"}',
                        help="what the map shows (predict keys target, period) as JSON: the step it is scored at")
    parser.add_argument("--fold", type=int, default=None,
                        help="score cross-validation fold K of the test design instead of its test blocks")
    parser.add_argument("--classes", required=True, help="the class table as JSON")
    parser.add_argument("--options", default="{}", help="the evaluation config section as JSON")
    parser.add_argument("--model", type=Path, default=None, help="trained model folder (training curves)")
    parser.add_argument("--out", required=True, type=Path, help="report folder")
    args = parser.parse_args(argv)

    def work() -> None:
        table = ClassTable.from_config(json.loads(args.classes))
        options = EvaluationOptions.from_options(parse_options(args.options, what="evaluate"))
        report, test_mask = evaluate(args.map, args.labels, table, options, args.out, fold=args.fold,
                                     target=TargetOptions.from_json(args.target))
        write_map_report(args.out / "report.html", report=report, map_path=args.map, cube_path=args.cube,
                         model_dir=args.model, table=table, test_mask=test_mask)

    return run_stage(work, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
