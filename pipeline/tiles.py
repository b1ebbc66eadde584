"""Stage ``tiles``: the AOI-level steps of a tiled AOI (``runtime.tiling.tile_size``), one subcommand each.

``python -m pipeline.tiles plan --cubes results/x/tiles/r0c0/cube.zarr ... --layout '<layout JSON>'
--cube-options '<cube JSON>' --aoi '<aois.x JSON>' --features '<features JSON>' --plan results/x/tiles/plan.json
--grid results/x/tiles/grid.zarr``: what the AOI decides once for all its tiles (the dates kept,
the AOI's clear fractions the tile composites use on a time grid, and the PCA) -> ``plan.json``
+ ``grid.zarr`` (:func:`pipeline.tiling.plan.plan_tiles`).

``python -m pipeline.tiles mosaic-features --tiles results/x/tiles/r0c0/features.zarr ...
--plan results/x/tiles/plan.json --grid results/x/tiles/grid.zarr --out results/x/features.zarr``:
the tile feature stores -> the AOI's ``features.zarr``
(:func:`pipeline.tiling.mosaic.run_mosaic_features`).

``python -m pipeline.tiles mosaic-map --tiles results/x/tiles/r0c0/maps/semi_convlstm ...
--plan results/x/tiles/plan.json --model results/x/models/semi_convlstm --out results/x/maps/semi_convlstm``:
the tile maps -> the AOI's map folder, VRT + COG (:func:`pipeline.tiling.mosaic.run_mosaic_map`).

The per-tile cube, composite, features and prediction are the untiled stages with ``--tile``
(:mod:`pipeline.cube`, :mod:`pipeline.composite`, :mod:`pipeline.features`, :mod:`pipeline.predict`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli import add_common_options, run_stage
from pipeline.config import parse_options
from pipeline.enrich import FeatureOptions
from pipeline.errors import ConfigError
from pipeline.raster.load import CubeOptions
from pipeline.stac.aoi import aoi_from_config
from pipeline.tiling.layout import TileLayout
from pipeline.tiling.mosaic import run_mosaic_features, run_mosaic_map
from pipeline.tiling.plan import plan_tiles
from pipeline.timegrid.grid import time_grid


def plan(args: argparse.Namespace) -> None:
    """``plan``: write the AOI's ``plan.json`` and ``grid.zarr`` (on the time grid of
    ``cube.period`` over the AOI's dates when it is set)."""
    cube = CubeOptions.from_options(parse_options(args.cube_options, what="cube"))
    grid = None
    if cube.period is not None:
        if args.aoi is None:
            raise ConfigError("cube.period is set: the tile plan needs --aoi (the aois.<name> entry: start, end)")
        aoi = aoi_from_config("aoi", parse_options(args.aoi, what="aoi"))
        grid = time_grid(aoi.start, aoi.end, cube.period)
    plan_tiles(args.cubes, TileLayout.from_dict(parse_options(args.layout, what="layout")),
               min_valid_fraction=cube.min_valid_fraction, features=FeatureOptions.from_json(args.features),
               plan_path=args.plan, grid_path=args.grid, threads=args.threads, time_grid=grid,
               composite=cube.composite, fill=cube.fill)


def mosaic_features(args: argparse.Namespace) -> None:
    """``mosaic-features``: write the AOI's ``features.zarr``."""
    run_mosaic_features(args.tiles, args.plan, args.grid, args.out, threads=args.threads)


def mosaic_map(args: argparse.Namespace) -> None:
    """``mosaic-map``: write the AOI's map folder."""
    run_mosaic_map(args.tiles, args.plan, args.model, args.out)


def build_parser() -> argparse.ArgumentParser:
    """The stage's parser: one subparser per subcommand, each with its work function as ``work``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{plan,mosaic-features,mosaic-map}")

    p = add_common_options(commands.add_parser(
        "plan", help="the dates and PCA of a tiled AOI -> plan.json + grid.zarr",
        description="What a tiled AOI decides once for all its tiles -> plan.json + grid.zarr."))
    p.add_argument("--cubes", required=True, nargs="+", type=Path, help="tile cube.zarr stores, in layout order")
    p.add_argument("--layout", required=True, help="the AOI's tile layout as JSON (pipeline.tiling.layout)")
    p.add_argument("--cube-options", default="{}",
                   help="the cube config section as JSON (min_valid_fraction; period, composite, fill)")
    p.add_argument("--aoi", default=None, help="the aois.<name> entry as JSON (start, end: the time grid)")
    p.add_argument("--features", default="{}", help="the features config section as JSON (PCA)")
    p.add_argument("--plan", required=True, type=Path, help="plan.json to write")
    p.add_argument("--grid", required=True, type=Path, help="grid.zarr to write")
    p.add_argument("--threads", type=int, default=1, help="dask threads")
    p.set_defaults(work=plan)

    p = add_common_options(commands.add_parser(
        "mosaic-features", help="the tile feature stores -> the AOI's features.zarr",
        description="The tile feature stores of a tiled AOI -> the AOI's features.zarr."))
    p.add_argument("--tiles", required=True, nargs="+", type=Path, help="tile features.zarr, in layout order")
    p.add_argument("--plan", required=True, type=Path, help="plan.json of the AOI")
    p.add_argument("--grid", required=True, type=Path, help="grid.zarr of the AOI")
    p.add_argument("--out", required=True, type=Path, help="features.zarr of the AOI to write")
    p.add_argument("--threads", type=int, default=1, help="dask threads")
    p.set_defaults(work=mosaic_features)

    p = add_common_options(commands.add_parser(
        "mosaic-map", help="the tile maps -> the AOI's map folder (VRT + COG)",
        description="The tile maps of a tiled AOI -> the AOI's map folder (VRT + COG)."))
    p.add_argument("--tiles", required=True, nargs="+", type=Path, help="tile map folders, in layout order")
    p.add_argument("--plan", required=True, type=Path, help="plan.json of the AOI")
    p.add_argument("--model", required=True, type=Path, help="trained model folder (class table)")
    p.add_argument("--out", required=True, type=Path, help="AOI map folder to write")
    p.set_defaults(work=mosaic_map)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    return run_stage(lambda: args.work(args), verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
