"""The plan of a tiled AOI: what it decides once for all its tiles -> ``plan.json`` + ``grid.zarr``.

Written by ``python -m pipeline.tiles plan`` (:mod:`pipeline.tiles`), read by the tile
feature and prediction stages and the mosaics.

Tiles that decided these on their own would disagree and the mosaic would show seams, so they
are decided here from the tile cubes' cores (the AOI grid, each pixel once), exactly as the
untiled cube and feature stages decide them on the whole AOI:

- the dates kept: every date whose share of valid AOI pixels reaches ``cube.min_valid_fraction``
  (tile cubes keep every date), among the dates every tile could read;
- with a regular time grid (``cube.period``): the AOI-level clear fraction of each kept
  acquisition (``cube.composite: best`` ranks by it), so that every tile composites the same
  acquisitions the same way (:func:`tile_acquisitions`, read by ``python -m pipeline.composite
  --plan``) and the tile composites equal the untiled ``composite.zarr`` on the cores;
- the PCA of the feature stage (:func:`pipeline.enrich.compute.fit_cube_pca`; its pixel
  sample is drawn by position on the AOI grid, so it is the untiled run's sample), fitted on
  the series the features enrich: the acquisitions, or their composite on the grid.

``plan.json``: ``layout`` (:class:`pipeline.tiling.layout.TileLayout`), ``dates`` (ISO, ns: the
dates of the features, i.e. the acquisitions kept, or the grid's step starts), ``skipped``
(dates left out, why), ``pca`` (:meth:`pipeline.enrich.pca.PcaFit.to_dict`), ``crs``,
``transform``, ``time_grid`` (null, or :class:`GridPlan`). ``grid.zarr``: the AOI-level store the
label and evaluation stages read instead of ``cube.zarr`` / ``composite.zarr`` (no
reflectance): ``valid`` (time, y, x) bool, ``valid_fraction`` (time,) float32, ``aoi_mask`` (y,
x) bool, coords ``time``/``y``/``x``/``item_ids``, the series' attrs (with ``time_grid`` on a
grid) with the AOI ``transform`` and ``skipped``.
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
from pipeline.enrich.options import FeatureOptions
from pipeline.enrich.pca import PcaFit
from pipeline.errors import CubeError, GridError, PipelineError
from pipeline.raster.zarr_io import open_store, write_zarr_atomic
from pipeline.tiling.cores import mosaic_cores
from pipeline.tiling.layout import TileLayout
from pipeline.tiling.windows import Tile
from pipeline.timegrid.composite import composite_cube
from pipeline.timegrid.grid import Composite, Fill, TimeGrid

log = logging.getLogger(__name__)

#: Attrs of a tile cube that describe the tile, not the AOI (left out of the AOI stores).
TILE_ATTRS = ("tile", "tile_window", "tile_core", "completion_manifest")


def _iso(dates: np.ndarray) -> list[str]:
    return [str(d) for d in np.asarray(dates).astype("datetime64[ns]")]


@dataclass(frozen=True)
class GridPlan:
    """What every tile of an AOI on a regular time grid composites (``plan.json`` ``time_grid``):
    the acquisitions kept, their AOI-level clear fractions, and the grid options."""

    acquisitions: np.ndarray  # (n,) datetime64[ns]
    valid_fraction: np.ndarray  # (n,) float32, share of the AOI's pixels clear at each acquisition
    period: str
    composite: str
    fill: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"acquisitions": _iso(self.acquisitions), "valid_fraction": [float(f) for f in self.valid_fraction],
                "period": self.period, "composite": self.composite, "fill": self.fill}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GridPlan:
        """Inverse of :meth:`to_dict`."""
        return cls(np.array(d["acquisitions"], dtype="datetime64[ns]"), np.array(d["valid_fraction"], dtype=np.float32),
                   str(d["period"]), str(d["composite"]), str(d["fill"]))


@dataclass(frozen=True)
class TilePlan:
    """The per-AOI decisions of a tiled run (``plan.json``)."""

    layout: TileLayout
    dates: np.ndarray  # (time,) datetime64[ns], the dates of the features (acquisitions or grid steps)
    skipped: list[str]
    pca: PcaFit
    crs: str
    transform: list[float]
    time_grid: GridPlan | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"layout": self.layout.to_dict(), "dates": _iso(self.dates), "skipped": self.skipped,
                "pca": self.pca.to_dict(), "crs": self.crs, "transform": self.transform,
                "time_grid": None if self.time_grid is None else self.time_grid.to_dict()}

    @classmethod
    def read(cls, path: str | Path) -> TilePlan:
        """Read ``plan.json``; PipelineError naming the file when it is unusable."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
            grid = None if d.get("time_grid") is None else GridPlan.from_dict(d["time_grid"])
            return cls(TileLayout.from_dict(d["layout"]), np.array(d["dates"], dtype="datetime64[ns]"),
                       list(d["skipped"]), PcaFit.from_dict(d["pca"]), str(d["crs"]), [float(v) for v in d["transform"]],
                       grid)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PipelineError(f"cannot read the tile plan {path} ({exc}); delete it and rerun the workflow") from exc


def tile_dates(ds: xr.Dataset, tile: Tile, dates: np.ndarray) -> xr.Dataset:
    """``ds``, the store of ``tile`` (its id and window shape: a store of another tiling must
    not be mosaicked), on the plan's ``dates`` (datetime64); GridError when it is not that
    tile's store or lacks one of the dates."""
    if ds.attrs.get("tile") != tile.id or (ds.sizes["y"], ds.sizes["x"]) != tile.window.shape:
        raise GridError(f"the cube is not the cube of tile {tile.id} (window {tile.to_dict()['window']}); "
                        f"the tiling changed - rerun the workflow")
    missing = np.setdiff1d(dates, ds.time.values.astype("datetime64[ns]"))
    if missing.size:
        raise GridError(f"tile {tile.id}'s cube lacks {missing.size} date(s) of the plan (first {missing[0]}); "
                        f"rerun the tile plan")
    return ds.sel(time=dates)


def tile_acquisitions(cube: xr.Dataset, plan: TilePlan, tile: Tile) -> xr.Dataset:
    """One tile's cube on the plan's acquisitions with their AOI-level ``valid_fraction`` (time,)
    float32: the input of the tile's composite (:func:`pipeline.timegrid.composite.composite_cube`),
    which then equals the untiled composite on the tile's window. GridError when the tile or the
    plan do not fit."""
    if plan.time_grid is None:
        raise GridError("the tile plan was made without a time grid (cube.period null); rerun the tile plan")
    return tile_dates(cube, tile, plan.time_grid.acquisitions).assign(
        valid_fraction=("time", plan.time_grid.valid_fraction))


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


def grid_store(series: xr.Dataset, chunk: int, skipped: list[str], layout: TileLayout) -> xr.Dataset:
    """The AOI's ``grid.zarr`` (module docstring) of its lazy ``series`` (the acquisitions kept
    or their composite), chunked ``chunk`` px."""
    return xr.Dataset({"valid": series["valid"].chunk({"time": 1, "y": chunk, "x": chunk}),
                       "valid_fraction": series["valid_fraction"].astype(np.float32),
                       "aoi_mask": series["aoi_mask"].chunk({"y": chunk, "x": chunk})},
                      coords={"item_ids": series["item_ids"]},
                      attrs={**series.attrs, "skipped": skipped, "tiling": layout.to_dict()}).drop_encoding()


def plan_tiles(cube_paths: list[Path], layout: TileLayout, *, min_valid_fraction: float, features: FeatureOptions,
               plan_path: Path, grid_path: Path, threads: int = 1, time_grid: TimeGrid | None = None,
               composite: Composite = "median", fill: Fill = "linear") -> TilePlan:
    """Decide the dates and the PCA of a tiled AOI; write ``plan.json`` and ``grid.zarr``. With
    ``time_grid``: the series is the composite (``composite``, ``fill``) of the acquisitions kept
    on that grid, as ``python -m pipeline.composite`` makes it for an untiled AOI."""
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
        cube = cube.isel(time=keep).assign(valid_fraction=("time", fraction[keep].astype(np.float32)))
        regrid, series = None, cube
        if time_grid is not None:
            regrid = GridPlan(dates[keep], fraction[keep].astype(np.float32), time_grid.period, composite, fill)
            series = composite_cube(cube, time_grid, method=composite, fill=fill)
        from pipeline.enrich.compute import fit_cube_pca  # here: torch only for the stage that fits the plan

        fit = fit_cube_pca(series, features)
        write_zarr_atomic(grid_store(series, features.chunk, skipped, layout), grid_path)
    plan = TilePlan(layout, series.time.values.astype("datetime64[ns]"), skipped, fit, str(cube.attrs["crs"]),
                    [float(v) for v in cube.attrs["transform"]], regrid)
    write_text_atomic(plan_path, json.dumps(plan.to_dict()))
    log.info("plan of %d tiles: %d acquisitions kept (%d left out), %d dates of features, PCA on %d pixels",
             len(layout.tiles), len(keep), len(skipped), plan.dates.size, int(fit.n_samples[0]))
    return plan

