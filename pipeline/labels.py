"""Stage ``labels``: reference labels on the cube grid -> ``labels.zarr``.

Usage::

    python -m pipeline.labels --cube results/x/cube.zarr --out results/x/labels.zarr \
        --classes '[{"id": 1, "name": "cultivated", "color": "#e6c34a"}, ...]' \
        --options '{"source": "resources/labels/x", "date_fraction": 0.5}'

``--classes`` is the config's class table (JSON list of ``{id, name, color}``), ``--options``
the config's ``labels`` section (see :class:`pipeline.reference.options.LabelOptions`). The
output store holds ``labels`` dims (time, y, x) uint8 class ids, 0 = unlabelled, on the
cube's grid and dates (layout in :mod:`pipeline.raster.zarr_io`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipeline.cli import base_parser, run_stage
from pipeline.raster.zarr_io import open_store, write_zarr_atomic
from pipeline.reference.build import build_labels
from pipeline.reference.classes import ClassTable
from pipeline.reference.options import LabelOptions

log = logging.getLogger(__name__)

CHUNK_YX = 1024


def make_labels(
    cube: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    classes_json: str,
    options_json: str,
) -> Path:
    """Build ``out`` (labels.zarr) from the cube store ``cube``; returns ``out``."""
    table = ClassTable.from_json(classes_json)
    options = LabelOptions.from_json(options_json)
    ds = open_store(cube, required=("valid",))
    labels = build_labels(ds, table, options)
    h, w = labels["labels"].shape[1:]
    encoding = {"labels": {"chunks": (1, min(h, CHUNK_YX), min(w, CHUNK_YX))}}
    return write_zarr_atomic(labels, out, encoding=encoding)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pipeline.labels``; returns the exit status (2 = user error)."""
    parser = base_parser("Reference labels on the cube grid -> labels.zarr")
    parser.add_argument("--cube", required=True, help="cube.zarr of the AOI (its grid and dates)")
    parser.add_argument("--out", required=True, help="labels.zarr to write")
    parser.add_argument("--classes", required=True, help="class table, JSON list of {id, name, color}")
    parser.add_argument("--options", default="{}", help="labels options, one JSON object")
    args = parser.parse_args(argv)
    return run_stage(
        lambda: make_labels(args.cube, args.out, classes_json=args.classes, options_json=args.options),
        verbose=args.verbose,
    )


if __name__ == "__main__":
    raise SystemExit(main())
