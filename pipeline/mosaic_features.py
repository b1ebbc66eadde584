"""Stage ``mosaic_features``: the tile feature stores of a tiled AOI -> the AOI's ``features.zarr``.

``python -m pipeline.mosaic_features --tiles results/x/tiles/r0c0/features.zarr ...
--plan results/x/tiles/plan.json --grid results/x/tiles/grid.zarr --out results/x/features.zarr``

Copies each tile's core (its overlap left out) into one store with the layout of the untiled
feature stage (:func:`pipeline.enrich.build_features`): ``features`` (time, channel, y, x) in
the stored dtype, ``valid`` (time, y, x) bool, chunks (1, channel, chunk, chunk), the AOI
grid's ``crs``/``transform`` and the AOI attrs of ``grid.zarr`` (dates left out, tiling) plus
the tiles' ``features_*`` attrs. Training samples patches across tiles from this store with
the train stage unchanged; the experiments and the cloud-cover subsets read it too.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from zarr.codecs import BloscCodec

from pipeline.cli import base_parser, dask_scheduler, run_stage
from pipeline.errors import GridError
from pipeline.raster.mosaic import mosaic_cores
from pipeline.raster.zarr_io import open_store, write_zarr_atomic
from pipeline.tile_plan import TILE_ATTRS, TilePlan

log = logging.getLogger(__name__)


def run_mosaic_features(tile_paths: list[Path], plan_path: Path, grid_path: Path, out: Path, *,
                        threads: int = 1) -> Path:
    """Write the AOI feature store ``out`` from the tile stores (in the plan's layout order)."""
    plan = TilePlan.read(plan_path)
    grid = open_store(grid_path, required=("valid",))
    tiles = [open_store(p, required=("features", "valid")) for p in tile_paths]
    ds = mosaic_cores(tiles, plan.layout, what="features store")
    for name in ("time", "y", "x"):
        if not np.array_equal(ds[name].values, grid[name].values):
            raise GridError(f"the tile features' {name} coordinates differ from {grid_path}; rebuild the tiles")
    chunk = int(tiles[0].attrs.get("features_options", {}).get("chunk", 512))
    ds = ds.drop_encoding().chunk({"time": 1, "channel": -1, "y": chunk, "x": chunk})
    ds["features"].encoding = {"compressors": (BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),)}
    features_attrs = {k: v for k, v in tiles[0].attrs.items() if k.startswith("features_")}
    aoi_attrs = {k: v for k, v in grid.attrs.items() if k not in TILE_ATTRS}
    ds.attrs = {**aoi_attrs, **features_attrs}
    with dask_scheduler(threads):
        write_zarr_atomic(ds, out)
    log.info("features mosaic %s of %d tiles: %s", out, len(tiles), dict(ds.sizes))
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--tiles", required=True, nargs="+", type=Path, help="tile features.zarr, in layout order")
    parser.add_argument("--plan", required=True, type=Path, help="plan.json of the AOI")
    parser.add_argument("--grid", required=True, type=Path, help="grid.zarr of the AOI")
    parser.add_argument("--out", required=True, type=Path, help="features.zarr of the AOI to write")
    parser.add_argument("--threads", type=int, default=1, help="dask threads")
    args = parser.parse_args(argv)
    return run_stage(lambda: run_mosaic_features(args.tiles, args.plan, args.grid, args.out, threads=args.threads),
                     verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
