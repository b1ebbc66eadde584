"""Stage ``composite``: ``cube.zarr`` (one step per acquisition) -> ``composite.zarr`` on a regular time grid.

``python -m pipeline.composite --cube results/demo/cube.zarr --aoi '<aois.demo JSON>'
--options '<cube section JSON>' --out results/demo/composite.zarr [--threads N]``

The grid (``cube.period``, :mod:`pipeline.timegrid.grid`) starts at the AOI's start date and
covers it to its end date; each step holds the composite (``cube.composite``) of its clear
observations, steps without one are filled (``cube.fill``) but stay ``valid`` False, steps
without any acquisition are kept as missing. Layout: :func:`pipeline.timegrid.composite.composite_cube`
(also in :mod:`pipeline.raster.zarr_io`). Written atomically with a completion manifest.

A tile of a tiled AOI (``--plan results/x/tiles/plan.json --tile r0c1``, ``--cube`` the tile's
cube): the plan's acquisitions with their AOI-level clear fractions
(:func:`pipeline.tiling.plan.tile_acquisitions`) on the same grid, so that the tile's composite
equals the untiled composite on the tile's window and the tiles agree at their seams.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cli import base_parser, dask_scheduler, run_stage
from pipeline.config import parse_options
from pipeline.errors import ConfigError, GridError
from pipeline.raster.load import CubeOptions
from pipeline.raster.object_store import store_path
from pipeline.raster.zarr_io import open_store, write_zarr_atomic
from pipeline.stac.aoi import aoi_from_config
from pipeline.tiling.plan import TilePlan, tile_acquisitions
from pipeline.timegrid.composite import composite_cube
from pipeline.timegrid.grid import TimeGrid, time_grid

log = logging.getLogger(__name__)

REQUIRED = ("reflectance", "valid", "valid_fraction", "aoi_mask")


def check_tile_grid(plan: TilePlan, grid: TimeGrid, options: CubeOptions) -> None:
    """GridError unless the tile plan was made for this grid and these grid options."""
    made = plan.time_grid
    if made is None or (made.period, made.composite, made.fill) != (options.period, options.composite, options.fill) \
            or not np.array_equal(plan.dates, grid.starts):
        raise GridError("the tile plan was made for another time grid (cube.period, cube.composite, cube.fill or "
                        "the AOI's dates changed); rerun the tile plan (the workflow does this)")


def run_composite(cube_path: str | os.PathLike[str], aoi_entry: dict[str, Any], options: CubeOptions,
                  out: str | os.PathLike[str], *, threads: int = 1, plan: TilePlan | None = None,
                  tile: str | None = None) -> Path | str:
    """Composite the cube at ``cube_path`` on the grid of ``options.period`` over the AOI's dates
    (``aoi_entry``: the ``aois.<name>`` config entry) and write ``out`` atomically. With ``plan``
    and ``tile``: the cube is that tile's cube of a tiled AOI (module docstring)."""
    if options.period is None:
        raise ConfigError("cube.period is null (one step per acquisition, the paper's protocol): there is no grid "
                          "to composite on; set cube.period (e.g. '16D') or read cube.zarr directly")
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    if (plan is None) != (tile is None):
        raise ConfigError("--plan and --tile go together (a tile of a tiled AOI)")
    cube = open_store(cube_path, required=REQUIRED)
    aoi = aoi_from_config(str(cube.attrs.get("aoi", "aoi")), aoi_entry)
    grid = time_grid(aoi.start, aoi.end, options.period)
    if plan is not None:
        check_tile_grid(plan, grid, options)
        cube = tile_acquisitions(cube, plan, plan.layout.tile(str(tile)))
    ds = composite_cube(cube, grid, method=options.composite, fill=options.fill)
    record = ds.attrs["time_grid"]
    log.info("composite %s of %d acquisitions on %d steps of %s (%d empty), fill %s -> %s", options.composite,
             cube.sizes["time"], grid.steps, options.period, record["empty_steps"], options.fill, out)
    with dask_scheduler(threads):
        return write_zarr_atomic(ds, out)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 = user error)."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--cube", required=True, type=store_path, help="cube.zarr of the cube stage")
    parser.add_argument("--aoi", required=True, help="the aois.<name> config entry as JSON (start, end)")
    parser.add_argument("--options", default="{}", help="the cube config section as JSON (period, composite, fill)")
    parser.add_argument("--out", required=True, type=store_path, help="composite.zarr to write")
    parser.add_argument("--threads", type=int, default=1, help="dask threads")
    parser.add_argument("--plan", type=Path, default=None, help="plan.json of a tiled AOI (with --tile)")
    parser.add_argument("--tile", default=None, help="tile id (r0c1) of --cube in the plan's layout")
    args = parser.parse_args(argv)

    def work() -> None:
        options = CubeOptions.from_options(parse_options(args.options, what="cube"))
        run_composite(args.cube, parse_options(args.aoi, what="aoi"), options, args.out, threads=args.threads,
                      plan=TilePlan.read(args.plan) if args.plan else None, tile=args.tile)

    return run_stage(work, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
