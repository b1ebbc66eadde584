"""Stage ``features``: ``cube.zarr`` -> ``features.zarr`` (paper eq. 1).

Usage::

    python -m pipeline.features --cube results/x/cube.zarr --out results/x/features.zarr \\
        --options '{"stem": "resnet18", "pca_mode": "global"}' --threads 8

``--options`` is the config section ``features`` as one JSON object (keys and defaults:
:class:`pipeline.enrich.options.FeatureOptions`). ``--scheduler`` runs the computation on a
dask.distributed scheduler instead of local threads. Exit status 2 on user errors.

A tile of a tiled AOI (``--plan results/x/tiles/plan.json --tile r0c1``, :mod:`pipeline.tiling.layout`;
``--cube`` is then the tile's cube, or its composite on a regular time grid) keeps the plan's
dates and uses the plan's PCA, and computes the stem on the AOI grid (stride-2
phase, border and upsampling of the whole AOI), so that its features equal the untiled ones
except within the stem halo of its window edges inside the AOI (the overlap the mosaic drops).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import xarray as xr

from pipeline.cli import base_parser, dask_scheduler, run_stage
from pipeline.enrich import FeatureOptions, build_features
from pipeline.errors import ConfigError
from pipeline.raster.object_store import store_path
from pipeline.raster.zarr_io import open_store, write_zarr_atomic
from pipeline.tiling.plan import TilePlan, tile_dates
from pipeline.tiling.windows import Tile

log = logging.getLogger(__name__)


def run_features(
    cube_path: Path, out_path: Path, *, options: FeatureOptions, threads: int = 1,
    scheduler: str | None = None, plan: TilePlan | None = None, tile: str | None = None,
) -> Path:
    """Read the cube, build the features lazily and stream them into ``out_path`` atomically.

    With ``plan`` and ``tile``: the cube is that tile's cube of a tiled AOI (module docstring).
    """
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    if (plan is None) != (tile is None):
        raise ConfigError("--plan and --tile go together (a tile of a tiled AOI)")
    cube = open_store(cube_path, required=("reflectance", "valid"))
    torch.set_num_threads(1)  # parallelism comes from the `threads` dask workers
    with dask_scheduler(threads, scheduler):
        if plan is None:
            ds = build_features(cube, options)
        else:
            ds = build_tile_features(cube, plan, plan.layout.tile(str(tile)), options)
        log.info(
            "features %s %s, stem %s, PCA %s -> %s",
            dict(ds.sizes), ds["features"].dtype, options.stem, options.pca_mode, out_path,
        )
        return write_zarr_atomic(ds, out_path)


def build_tile_features(cube: xr.Dataset, plan: TilePlan, tile: Tile, options: FeatureOptions) -> xr.Dataset:
    """Lazy features of one tile's cube (its window of the AOI grid) with the AOI's dates and
    PCA; dims and dtypes of :func:`pipeline.enrich.build_features`."""
    return build_features(tile_dates(cube, tile, plan.dates), options, pca=plan.pca,
                          origin=(tile.window.y0, tile.window.x0), image_shape=plan.layout.shape)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("Enrich the cube with PCA + ResNet first-conv features (paper eq. 1).")
    parser.add_argument("--cube", type=store_path, required=True, help="input cube.zarr (path or fsspec URL)")
    parser.add_argument("--out", type=store_path, required=True, help="output features.zarr (path or fsspec URL)")
    parser.add_argument("--options", default="{}", help="features config section as JSON")
    parser.add_argument("--threads", type=int, default=1, help="dask worker threads")
    parser.add_argument("--scheduler", default=None, help="dask.distributed scheduler address (default: $DASK_SCHEDULER_ADDRESS, else local threads)")
    parser.add_argument("--plan", type=Path, default=None, help="plan.json of a tiled AOI (with --tile)")
    parser.add_argument("--tile", default=None, help="tile id (r0c1) of --cube in the plan's layout")
    args = parser.parse_args(argv)

    def work() -> None:
        options = FeatureOptions.from_json(args.options)
        run_features(
            args.cube, args.out, options=options, threads=args.threads, scheduler=args.scheduler,
            plan=TilePlan.read(args.plan) if args.plan else None, tile=args.tile,
        )

    return run_stage(work, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
