"""Stage ``labels``: reference labels on the cube grid -> ``labels.zarr``.

Usage::

    python -m pipeline.labels --cube results/x/cube.zarr --out results/x/labels.zarr \
        --classes '[{"id": 1, "name": "cultivated", "color": "#e6c34a"}, ...]' \
        --options '{"source": "resources/labels/x", "date_fraction": 0.5}'

``--classes`` is the config's class table (JSON list of ``{id, name, color}``), ``--options``
the config's ``labels`` section (see :class:`pipeline.reference.options.LabelOptions`),
``--design`` the test design (:class:`pipeline.split.design.DesignOptions`). The output store
holds ``labels`` dims (time, y, x) uint8 class ids, 0 = unlabelled (what training may use),
``reference`` (the same, every label of the source: what evaluation scores against), ``split``
(y, x) uint8 0 train / 1 test / 2 buffer and ``fold`` (y, x) int8 on the cube's grid and dates
(layout in :mod:`pipeline.raster.zarr_io`), and attrs ``design``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import xarray as xr

from pipeline.cli import base_parser, run_stage
from pipeline.raster.zarr_io import labels_encoding, open_store, write_zarr_atomic
from pipeline.reference.build import build_labels
from pipeline.reference.classes import ClassTable
from pipeline.reference.options import LabelOptions
from pipeline.split.design import BUFFER, TEST, TRAIN, DesignOptions, build_design
from pipeline.timegrid.period import TargetOptions, map_period, period_steps

log = logging.getLogger(__name__)

NOT_LAND_COVER = ("cloud", "shadow", "cloud shadow", "cirrus", "snow")  # class names a period map ignores


def with_design(labels: xr.Dataset, table: ClassTable, design: DesignOptions) -> xr.Dataset:
    """``labels`` (the :func:`build_labels` dataset) plus the AOI's test design: ``split`` (y, x)
    uint8 (0 train, 1 test, 2 buffer), ``fold`` (y, x) int8 (cross-validation fold of the pixel's
    block, -1 = block without labels) and attrs ``design`` (:func:`build_design`)."""
    lut = np.full(256, -1, dtype=np.int16)
    lut[np.asarray(table.ids())] = np.arange(len(table.ids()))
    result = build_design(lut[labels["reference"].values], table.names(), design)
    out = labels.assign(
        split=(("y", "x"), result.region, {"long_name": "test design region",
                                          "flag_values": [TRAIN, TEST, BUFFER],
                                          "flag_meanings": "train test buffer"}),
        fold=(("y", "x"), result.fold, {"long_name": "cross-validation fold of the block", "nodata": -1}),
    )
    out.attrs["design"] = result.record
    return out


def make_labels(
    cube: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    classes_json: str,
    options_json: str,
    design_json: str = "{}",
    target_json: str = '{"target": "last_date"}',
) -> Path:
    """Build ``out`` (labels.zarr) from the cube store ``cube``; returns ``out``."""
    table = ClassTable.from_json(classes_json)
    options = LabelOptions.from_json(options_json)
    design = DesignOptions.from_json(design_json)
    target = TargetOptions.from_json(target_json)
    ds = open_store(cube, required=("valid",))
    steps, dropped = None, ()
    if target.target == "period":  # a map of a period: static labels label its steps; clouds are no class
        times = ds["time"].values
        steps = period_steps(times, *map_period(times, target, ds.attrs))
        dropped = tuple(n for n in table.names() if n.lower() in NOT_LAND_COVER)
    labels = with_design(build_labels(ds, table, options, static_steps=steps, drop_classes=dropped), table, design)
    return write_zarr_atomic(labels, out, encoding=labels_encoding(labels))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pipeline.labels``; returns the exit status (2 = user error)."""
    parser = base_parser("Reference labels on the cube grid -> labels.zarr")
    parser.add_argument("--cube", required=True, help="cube.zarr of the AOI (its grid and dates)")
    parser.add_argument("--out", required=True, help="labels.zarr to write")
    parser.add_argument("--classes", required=True, help="class table, JSON list of {id, name, color}")
    parser.add_argument("--options", default="{}", help="labels options, one JSON object")
    parser.add_argument("--design", default="{}", help="test design (the evaluation split keys, buffer "
                        "resolved), one JSON object; default: spatial blocks")
    parser.add_argument("--target", default='{"target": "last_date"}',
                        help="what the map shows (predict keys target, period) as JSON: with target period, static "
                             "labels label the period's steps and cloud/shadow classes are ignored")
    args = parser.parse_args(argv)
    return run_stage(
        lambda: make_labels(args.cube, args.out, classes_json=args.classes, options_json=args.options,
                            design_json=args.design, target_json=args.target),
        verbose=args.verbose,
    )


if __name__ == "__main__":
    raise SystemExit(main())
