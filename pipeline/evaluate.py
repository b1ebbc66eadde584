"""Stage ``evaluate``: accuracy of a map against reference labels -> ``accuracy.json`` + report.

``python -m pipeline.evaluate --map results/demo/maps/semi_convlstm/classes.tif --cube results/demo/cube.zarr
--labels '<labels JSON>' --classes '<classes JSON>' --options '<evaluation JSON>'
--model results/demo/models/semi_convlstm --out results/demo/reports/semi_convlstm``

The reference is the label source read for the map date with no label scarcity (the map date
is the last date, which training never sees: the paper's test setting). Metrics count only
pixels labelled in the reference and mapped (0 is nodata in both). Area-adjusted accuracy and
error-adjusted areas (Olofsson et al. 2014) are computed from a stratified random sample drawn
from the map (written as ``sample.gpkg`` for labelling in QGIS), interpreted either from the
reference labels (``sample_reference: labels``) or from a labelled GeoPackage
(``sample_reference: file``); never from training or validation splits.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import xarray as xr

from pipeline.accuracy.area import area_adjusted_from_sample
from pipeline.accuracy.metrics import accuracy_report
from pipeline.accuracy.sampling import StratifiedSample, allocate_sample, sample_size_for_overall_accuracy, stratified_sample
from pipeline.atomic import atomic_path, write_text_atomic
from pipeline.cli import base_parser, run_stage
from pipeline.config import parse_options, reject_unknown
from pipeline.errors import AccuracyError, ConfigError, GridError
from pipeline.raster.object_store import store_path
from pipeline.raster.zarr_io import open_store
from pipeline.reference.build import build_labels
from pipeline.reference.classes import ClassTable
from pipeline.reference.options import LabelOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationOptions:
    """The ``evaluation`` config section (sample design of the area-adjusted estimates)."""

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


def read_map(path: Path, attrs: dict[str, Any]) -> np.ndarray:
    """The classified map (y, x) uint8, checked against the cube grid."""
    with rasterio.open(path) as src:
        data = src.read(1)
        if src.crs is None or src.crs.to_string() != rasterio.crs.CRS.from_user_input(attrs["crs"]).to_string():
            raise GridError(f"{path} is in {src.crs}, the cube in {attrs['crs']}; predict again from this cube")
        if not np.allclose(list(src.transform)[:6], attrs["transform"]):
            raise GridError(f"{path} transform {list(src.transform)[:6]} differs from the cube's {attrs['transform']}")
    return data


def reference_at(cube: xr.Dataset, table: ClassTable, labels: dict[str, Any], when: np.datetime64) -> np.ndarray:
    """Reference class ids (y, x) uint8 of date ``when`` from the label source, no scarcity applied."""
    full = {k: v for k, v in labels.items() if k not in ("date_fraction", "pixel_fraction", "points_per_class")}
    ds = build_labels(cube, table, LabelOptions.from_mapping(full))
    times = ds.time.values
    i = int(np.argmin(np.abs(times - when)))
    if times[i].astype("datetime64[D]") != np.datetime64(when, "D"):
        raise AccuracyError(f"no reference labels for the map date {str(when)[:10]}; label that date to evaluate")
    ref = ds["labels"].isel(time=i).values
    if not (ref > 0).any():
        raise AccuracyError(f"no reference labels for the map date {str(when)[:10]} (the label source labels no "
                            f"pixel of that date); label that date to evaluate the map")
    return ref


def draw_sample(class_map: np.ndarray, table: ClassTable, options: EvaluationOptions) -> StratifiedSample:
    """Stratified random sample of the map (strata = map classes of the table), sized by Olofsson
    eq. 13; classes absent from the map are strata of weight 0 with no unit."""
    ids = table.ids()
    mapped = np.array([(class_map == cid).sum() for cid in ids], dtype=float)
    n = options.sample_size or sample_size_for_overall_accuracy(
        mapped, [options.expected_users_accuracy] * len(ids), target_se=options.target_se)
    allocation = allocate_sample(n, mapped, min_per_stratum=options.min_per_stratum)
    allocation = np.minimum(allocation, mapped.astype(int))
    return stratified_sample(class_map, allocation, class_ids=ids, seed=options.seed)


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


def evaluate(map_path: Path, cube_path: Path, table: ClassTable, labels: dict[str, Any], options: EvaluationOptions,
             out_dir: Path) -> dict[str, Any]:
    """Compute and write ``accuracy.json`` (+ ``sample.gpkg``); return the accuracy dict."""
    cube = open_store(cube_path, required=("valid",))
    class_map = read_map(map_path, cube.attrs)
    when = cube.time.values[-1]
    reference = reference_at(cube, table, labels, when)
    report = accuracy_report(reference, class_map, table)
    report["map_date"] = str(when)[:10]
    report["evaluated_pixels"] = int(((reference > 0) & (class_map > 0)).sum())
    if options.sample_reference != "none":
        sample = draw_sample(class_map, table, options)
        ref = sample_reference(sample, reference, table, options, cube.attrs)
        res = float(abs(cube.attrs["transform"][0]))
        estimate = area_adjusted_from_sample(sample, ref, table, pixel_area_ha=res * res / 1e4)
        report["area_adjusted"] = estimate.to_dict()
        report["area_adjusted"]["sample_reference"] = options.sample_reference
        write_sample(sample, ref, out_dir / "sample.gpkg", cube.attrs, table)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "accuracy.json", json.dumps(report, indent=1, allow_nan=False))
    log.info("OA %.3f, kappa %.3f, weighted F1 %.3f on %d pixels", report["overall_accuracy"], report["kappa"],
             report["f1_weighted"], report["evaluated_pixels"])
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--map", required=True, type=Path, help="classes.tif of the map")
    parser.add_argument("--cube", required=True, type=store_path, help="cube.zarr (grid and dates; path or fsspec URL)")
    parser.add_argument("--labels", required=True, help="the labels config section as JSON")
    parser.add_argument("--classes", required=True, help="the class table as JSON")
    parser.add_argument("--options", default="{}", help="the evaluation config section as JSON")
    parser.add_argument("--model", type=Path, default=None, help="trained model folder (training curves)")
    parser.add_argument("--out", required=True, type=Path, help="report folder")
    args = parser.parse_args(argv)

    def work() -> None:
        table = ClassTable.from_config(json.loads(args.classes))
        options = EvaluationOptions.from_options(parse_options(args.options, what="evaluate"))
        report = evaluate(args.map, args.cube, table, parse_options(args.labels, what="labels"), options, args.out)
        from pipeline.report.html import write_report

        write_report(args.out / "report.html", report=report, map_path=args.map, cube_path=args.cube,
                     model_dir=args.model, table=table)

    return run_stage(work, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
