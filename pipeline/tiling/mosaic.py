"""The AOI mosaics of a tiled AOI: its feature store and its maps from those of the tiles.

Run by ``python -m pipeline.tiles mosaic-features`` and ``mosaic-map`` (:mod:`pipeline.tiles`).

:func:`run_mosaic_features`: the tile feature stores -> the AOI's ``features.zarr``. Copies each
tile's core (its overlap left out, :func:`pipeline.tiling.cores.mosaic_cores`) into one store
with the layout of the untiled feature stage (:func:`pipeline.enrich.build_features`):
``features`` (time, channel, y, x) in the stored dtype, ``valid`` (time, y, x) bool, chunks
(1, channel, chunk, chunk), the AOI grid's ``crs``/``transform`` and the AOI attrs of
``grid.zarr`` (dates left out, tiling) plus the tiles' ``features_*`` attrs. Training samples
patches across tiles from this store with the train stage unchanged; the experiments and the
cloud-cover subsets read it too.

:func:`run_mosaic_map`: the tile maps -> the AOI's map folder (VRT + COG). Each tile map holds
its core only, on the AOI grid (:mod:`pipeline.predict` with ``--tile``). For every raster of
the map (``classes``, ``probabilities``, ``confidence``, ``valid_count``) a VRT places the tile
cores (:func:`pipeline.raster.mosaic.write_vrt`, what ``gdalbuildvrt`` does) and the COG writer
of :mod:`pipeline.raster.cog` converts it row block by row block, with the untiled map's dtypes,
nodata, colour table, category names and raster attribute table (``classes.tif.aux.xml``), band
descriptions, units and overview resampling (MODE for classes, AVERAGE otherwise).
``classes.qml`` and ``item.json`` are written for the AOI grid. The output paths are the
untiled run's (``results/{aoi}/maps/{model}/``); with ``predict.dates: all`` the per-date
sub-folders are mosaicked too.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio

from pipeline.atomic import remove_stale_tmp
from pipeline.cli import dask_scheduler
from pipeline.errors import GridError, PipelineError, PredictionError
from pipeline.raster.cog import category_pam_xml, write_cog
from pipeline.raster.map_item import map_stac_item, write_map_item
from pipeline.raster.mosaic import VrtBands, write_vrt
from pipeline.raster.qgis_style import write_qml
from pipeline.raster.zarr_io import features_encoding, open_store, write_zarr_atomic
from pipeline.reference.classes import as_class_table
from pipeline.tiling.cores import mosaic_cores
from pipeline.tiling.plan import TILE_ATTRS, TilePlan

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
    ds["features"].encoding = features_encoding()
    features_attrs = {k: v for k, v in tiles[0].attrs.items() if k.startswith("features_")}
    aoi_attrs = {k: v for k, v in grid.attrs.items() if k not in TILE_ATTRS}
    ds.attrs = {**aoi_attrs, **features_attrs}
    with dask_scheduler(threads):
        write_zarr_atomic(ds, out)
    log.info("features mosaic %s of %d tiles: %s", out, len(tiles), dict(ds.sizes))
    return out


#: Rasters of a map folder and the overview resampling their writer uses.
RASTERS: dict[str, Literal["MODE", "AVERAGE"]] = {
    "probabilities.tif": "AVERAGE", "confidence.tif": "AVERAGE", "valid_count.tif": "AVERAGE", "classes.tif": "MODE",
}


def read_classes(model_dir: Path) -> list[dict[str, Any]]:
    """The class table of a trained model (``model_card.json``)."""
    card = model_dir / "model_card.json"
    try:
        return list(json.loads(card.read_text(encoding="utf-8"))["classes"])
    except (OSError, ValueError, KeyError) as exc:
        raise PipelineError(f"cannot read the class table from {card} ({exc}); train the model first") from exc


def mosaic_folder(tile_dirs: list[Path], plan: TilePlan, classes: list[dict[str, Any]], out: Path, workdir: Path) -> None:
    """Mosaic one map folder: the rasters of ``tile_dirs`` (layout order) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    offsets = [(t.core.y0, t.core.x0) for t in plan.layout.tiles]
    for name, resampling in RASTERS.items():
        sources = [(d / name, off) for d, off in zip(tile_dirs, offsets, strict=True)]
        absent = [str(p) for p, _ in sources if not p.is_file()]
        if absent:
            raise PredictionError(f"tile map(s) {absent[:3]} missing; rerun the tile predictions")
        vrt = write_vrt(sources, workdir / f"{name}.vrt", shape=plan.layout.shape, transform=plan.transform,
                        crs=plan.crs)
        with rasterio.open(sources[0][0]) as first:
            nodata, descriptions, units = first.nodata, list(first.descriptions), first.units[0]
        style: dict[str, Any] = {"descriptions": descriptions, "units": units or None}
        if name == "classes.tif":
            style["colormap"] = as_class_table(classes).colormap(int(nodata))
            style["pam_xml"] = category_pam_xml(classes, nodata=int(nodata))
        with VrtBands(vrt) as bands:
            write_cog(bands, out / name, crs=plan.crs, transform=plan.transform, nodata=nodata,
                      resampling=resampling, **style)
    write_qml(out / "classes.qml", classes)
    tile_item = json.loads((tile_dirs[0] / "item.json").read_text(encoding="utf-8"))
    props = {k: v for k, v in tile_item["properties"].items() if k.startswith("pipeline:")}
    tile_props = tile_item["properties"]
    item = map_stac_item(out, item_id=tile_item["id"], map_datetime=tile_props["datetime"],
                         start_datetime=tile_props.get("start_datetime"), end_datetime=tile_props.get("end_datetime"),
                         crs=plan.crs, transform=plan.transform, shape=plan.layout.shape, class_table=classes,
                         properties=props)
    write_map_item(item, out / "item.json")


def run_mosaic_map(tile_dirs: list[Path], plan_path: Path, model_dir: Path, out: Path) -> Path:
    """Write the AOI map folder ``out`` from the tile map folders (in the plan's layout order)."""
    plan = TilePlan.read(plan_path)
    if len(tile_dirs) != len(plan.layout.tiles):
        raise PredictionError(f"{len(tile_dirs)} tile maps for {len(plan.layout.tiles)} tiles; rerun the workflow")
    classes = read_classes(model_dir)
    folders = sorted({p.parent.relative_to(tile_dirs[0]) for p in tile_dirs[0].rglob("classes.tif")},
                     key=lambda p: (len(p.parts), str(p)))
    if not folders:
        raise PredictionError(f"{tile_dirs[0]} holds no map; rerun the tile predictions")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(out / "mosaic")
    with tempfile.TemporaryDirectory(prefix=".tmp-mosaic.", dir=out) as tmp:
        for rel in folders:
            mosaic_folder([d / rel for d in tile_dirs], plan, classes, out / rel, Path(tmp))
    log.info("mosaic %s of %d tiles (%d map(s))", out, len(tile_dirs), len(folders))
    return out

