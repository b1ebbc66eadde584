"""Stage ``mosaic_map``: the tile maps of a tiled AOI -> the AOI's map folder (VRT + COG).

``python -m pipeline.mosaic_map --tiles results/x/tiles/r0c0/maps/semi_convlstm ...
--plan results/x/tiles/plan.json --model results/x/models/semi_convlstm --out results/x/maps/semi_convlstm``

Each tile map holds its core only, on the AOI grid (:mod:`pipeline.predict` with ``--tile``).
For every raster of the map (``classes``, ``probabilities``, ``confidence``, ``valid_count``)
a VRT places the tile cores (:func:`pipeline.raster.mosaic.write_vrt`, what ``gdalbuildvrt``
does) and the COG writer of :mod:`pipeline.raster.cog` converts it row block by row block,
with the untiled map's dtypes, nodata, colour table, category names and raster attribute table
(``classes.tif.aux.xml``), band descriptions, units and overview resampling (MODE for classes,
AVERAGE otherwise). ``classes.qml`` and ``item.json`` are written for the AOI grid. The output
paths are the untiled run's (``results/{aoi}/maps/{model}/``); with ``predict.dates: all`` the
per-date sub-folders are mosaicked too.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Literal

import rasterio

from pipeline.atomic import remove_stale_tmp
from pipeline.cli import base_parser, run_stage
from pipeline.errors import PipelineError, PredictionError
from pipeline.raster.cog import category_pam_xml, write_cog
from pipeline.raster.map_item import map_stac_item, write_map_item
from pipeline.raster.mosaic import VrtBands, write_vrt
from pipeline.raster.qgis_style import write_qml
from pipeline.reference.classes import as_class_table as class_entries
from pipeline.tile_plan import TilePlan

log = logging.getLogger(__name__)

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
            style["colormap"] = {int(nodata): (0, 0, 0, 0)} | {e.id: e.rgba for e in class_entries(classes)}
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


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--tiles", required=True, nargs="+", type=Path, help="tile map folders, in layout order")
    parser.add_argument("--plan", required=True, type=Path, help="plan.json of the AOI")
    parser.add_argument("--model", required=True, type=Path, help="trained model folder (class table)")
    parser.add_argument("--out", required=True, type=Path, help="AOI map folder to write")
    args = parser.parse_args(argv)
    return run_stage(lambda: run_mosaic_map(args.tiles, args.plan, args.model, args.out), verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
