"""Stage ``features``: ``cube.zarr`` -> ``features.zarr`` (paper eq. 1).

Usage::

    python -m pipeline.features --cube results/x/cube.zarr --out results/x/features.zarr \\
        --options '{"stem": "resnet18", "pca_mode": "global"}' --threads 8

``--options`` is the config section ``features`` as one JSON object (keys and defaults:
:class:`pipeline.enrich.options.FeatureOptions`). ``--scheduler`` runs the computation on a
dask.distributed scheduler instead of local threads. Exit status 2 on user errors.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from pipeline.cli import base_parser, run_stage
from pipeline.enrich import FeatureOptions, build_features
from pipeline.errors import ConfigError
from pipeline.raster.zarr_io import open_store, write_zarr_atomic
from pipeline.scheduler import dask_scheduler

log = logging.getLogger(__name__)


def run_features(
    cube_path: Path, out_path: Path, *, options: FeatureOptions, threads: int = 1,
    scheduler: str | None = None,
) -> Path:
    """Read the cube, build the features lazily and stream them into ``out_path`` atomically."""
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    cube = open_store(cube_path, required=("reflectance", "valid"))
    torch.set_num_threads(1)  # parallelism comes from the `threads` dask workers
    with dask_scheduler(threads, scheduler):
        ds = build_features(cube, options)
        log.info(
            "features %s %s, stem %s, PCA %s -> %s",
            dict(ds.sizes), ds["features"].dtype, options.stem, options.pca_mode, out_path,
        )
        return write_zarr_atomic(ds, out_path)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("Enrich the cube with PCA + ResNet first-conv features (paper eq. 1).")
    parser.add_argument("--cube", type=Path, required=True, help="input cube.zarr")
    parser.add_argument("--out", type=Path, required=True, help="output features.zarr")
    parser.add_argument("--options", default="{}", help="features config section as JSON")
    parser.add_argument("--threads", type=int, default=1, help="dask worker threads")
    parser.add_argument("--scheduler", default=None, help="dask.distributed scheduler address (default: $DASK_SCHEDULER_ADDRESS, else local threads)")
    args = parser.parse_args(argv)

    def work() -> None:
        options = FeatureOptions.from_json(args.options)
        run_features(
            args.cube, args.out, options=options, threads=args.threads, scheduler=args.scheduler
        )

    return run_stage(work, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
