"""The plan of a tiled AOI: what it decides once for all its tiles -> ``plan.json`` + ``grid.zarr``.

Written by ``python -m pipeline.tiles plan`` (:mod:`pipeline.tiles`), read by the tile
feature and prediction stages and the mosaics.

Tiles that decided these on their own would disagree and the mosaic would show seams, so they
are decided here from the tile cubes' cores (the AOI grid, each pixel once), exactly as the
untiled cube and feature stages decide them on the whole AOI:

- the dates kept: every date whose share of valid AOI pixels reaches ``cube.min_valid_fraction``
  (tile cubes keep every date), among the dates every tile could read;
- the PCA of the feature stage (:func:`pipeline.enrich.compute.fit_cube_pca`; its pixel
  sample is drawn by position on the AOI grid, so it is the untiled run's sample).

``plan.json``: ``layout`` (:class:`pipeline.tiling.layout.TileLayout`), ``dates`` (ISO, ns),
``skipped`` (dates left out, why), ``pca`` (:meth:`pipeline.enrich.pca.PcaFit.to_dict`),
``crs``, ``transform``. ``grid.zarr``: the AOI-level store the label and evaluation stages
read instead of ``cube.zarr`` (no reflectance): ``valid`` (time, y, x) bool, ``valid_fraction``
(time,) float32, ``aoi_mask`` (y, x) bool, coords ``time``/``y``/``x``/``item_ids``, the
cube's attrs with the AOI ``transform`` and ``skipped``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from pipeline.atomic import write_text_atomic
from pipeline.cli import dask_scheduler
from pipeline.enrich import FeatureOptions, PcaFit
from pipeline.enrich.compute import fit_cube_pca
from pipeline.errors import CubeError, GridError, PipelineError
from pipeline.raster.zarr_io import open_store, write_zarr_atomic
from pipeline.tiling.cores import mosaic_cores
from pipeline.tiling.layout import TileLayout

log = logging.getLogger(__name__)

#: Attrs of a tile cube that describe the tile, not the AOI (left out of the AOI stores).
TILE_ATTRS = ("tile", "tile_window", "tile_core", "completion_manifest")


@dataclass(frozen=True)
class TilePlan:
    """The per-AOI decisions of a tiled run (``plan.json``)."""

    layout: TileLayout
    dates: np.ndarray  # (time,) datetime64[ns], the dates kept
    skipped: list[str]
    pca: PcaFit
    crs: str
    transform: list[float]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"layout": self.layout.to_dict(), "dates": [str(d) for d in self.dates.astype("datetime64[ns]")],
                "skipped": self.skipped, "pca": self.pca.to_dict(), "crs": self.crs, "transform": self.transform}

    @classmethod
    def read(cls, path: str | Path) -> TilePlan:
        """Read ``plan.json``; PipelineError naming the file when it is unusable."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(TileLayout.from_dict(d["layout"]), np.array(d["dates"], dtype="datetime64[ns]"),
                       list(d["skipped"]), PcaFit.from_dict(d["pca"]), str(d["crs"]), [float(v) for v in d["transform"]])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PipelineError(f"cannot read the tile plan {path} ({exc}); delete it and rerun the workflow") from exc


def common_dates(cubes: list[xr.Dataset]) -> tuple[np.ndarray, list[str]]:
    """Dates present in every tile cube, and one line per date some tile lacks (unreadable
    there with ``cube.on_error: skip``, or no scene over that tile)."""
    sets = [set(c.time.values.astype("datetime64[ns]").tolist()) for c in cubes]
    every, anywhere = set.intersection(*sets), set.union(*sets)
    missing = [f"{str(np.datetime64(d, 'ns'))[:10]}: not loaded in every tile" for d in sorted(anywhere - every)]
    return np.array(sorted(every), dtype="datetime64[ns]"), missing


def aoi_mosaic(cubes: list[xr.Dataset], layout: TileLayout, dates: np.ndarray) -> xr.Dataset:
    """Lazy AOI cube (reflectance, valid, aoi_mask) of the tile cores on ``dates``, with the
    first tile's attrs and the AOI transform (tile ``r0c0`` starts at the AOI origin)."""
    kept = [c.sel(time=dates)[["reflectance", "valid", "aoi_mask"]] for c in cubes]
    cube = mosaic_cores(kept, layout, what="cube")
    first = layout.tiles[0]
    if (first.window.y0, first.window.x0) != (0, 0):
        raise GridError("the first tile of the layout does not start at the AOI origin; this is a bug")
    cube.attrs = {k: v for k, v in cubes[0].attrs.items() if k not in TILE_ATTRS}
    return cube.assign_coords(item_ids=cubes[0]["item_ids"].sel(time=dates))


def plan_tiles(cube_paths: list[Path], layout: TileLayout, *, min_valid_fraction: float, features: FeatureOptions,
               plan_path: Path, grid_path: Path, threads: int = 1) -> TilePlan:
    """Decide the dates and the PCA of a tiled AOI; write ``plan.json`` and ``grid.zarr``."""
    cubes = [open_store(p, required=("reflectance", "valid", "aoi_mask", "item_ids")) for p in cube_paths]
    for tile, cube, path in zip(layout.tiles, cubes, cube_paths, strict=True):
        if cube.attrs.get("tile") != tile.id or list(cube.attrs.get("tile_window", [])) != tile.to_dict()["window"]:
            raise GridError(f"{path} is not the cube of tile {tile.id} with window {tile.to_dict()['window']}; "
                            f"the tiling changed - delete results/<aoi>/tiles and rerun")
    dates, skipped = common_dates(cubes)
    for c in cubes:
        skipped += [s for s in c.attrs.get("skipped", []) if s not in skipped]
    if len(dates) == 0:
        raise CubeError("no date was loaded in every tile: " + "; ".join(skipped[:5]) + "; check the tile cubes' "
                        "'skipped' attrs, or set cube.on_error: raise to see why")
    with dask_scheduler(threads):
        cube = aoi_mosaic(cubes, layout, dates)
        n_inside = max(int(cube["aoi_mask"].sum()), 1)
        fraction = (cube["valid"].sum(("y", "x")) / n_inside).astype("float32").values
        low = [i for i, f in enumerate(fraction) if f < min_valid_fraction]
        skipped += [f"{str(dates[i])[:10]}: valid fraction {fraction[i]:.3f} < {min_valid_fraction}" for i in low]
        keep = [i for i in range(len(dates)) if i not in low]
        if not keep:
            raise CubeError("no date left in the cube: " + "; ".join(skipped[:5]) + "; lower cube.min_valid_fraction, "
                            "raise catalog.max_cloud_cover or widen the dates")
        cube, dates = cube.isel(time=keep), dates[keep]
        fit = fit_cube_pca(cube, features)
        grid = xr.Dataset({"valid": cube["valid"].chunk({"time": 1, "y": features.chunk, "x": features.chunk}),
                           "valid_fraction": ("time", fraction[keep].astype(np.float32)),
                           "aoi_mask": cube["aoi_mask"].chunk({"y": features.chunk, "x": features.chunk})},
                          coords={"item_ids": cube["item_ids"]},
                          attrs={**cube.attrs, "skipped": skipped, "tiling": layout.to_dict()}).drop_encoding()
        write_zarr_atomic(grid, grid_path)
    plan = TilePlan(layout, dates, skipped, fit, str(cube.attrs["crs"]), [float(v) for v in cube.attrs["transform"]])
    write_text_atomic(plan_path, json.dumps(plan.to_dict()))
    log.info("plan of %d tiles: %d dates kept (%d left out), PCA on %d pixels", len(layout.tiles), len(dates),
             len(skipped), int(fit.n_samples[0]))
    return plan

