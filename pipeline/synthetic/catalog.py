"""Write the demo catalog to disk: COG assets, label rasters, STAC Items and Collection.

Layout of ``out_dir`` (written into a temporary sibling, renamed into place when complete)::

    collection.json                       landsat-c2-l2 Collection, rel=item links to every item
    items/<item_id>.json                  one STAC Item per date (absolute asset hrefs)
    assets/<item_id>/<item_id>_SR_B1.TIF  SR COGs B1..B7 (uint16, scale 2.75e-05, offset -0.2, nodata 0)
    assets/<item_id>/<item_id>_QA_PIXEL.TIF  QA_PIXEL COG (uint16, fill = 1)
    labels/<item_id>.tif                  reference classes (uint8 COG, colour table, 0 = fill/unlabelled)
    labels/labels.json                    class table and list of label rasters with their dates
    land_cover.tif                        the land cover at the end of the series (uint8 COG, no date:
                                          static labels of a period map; no cloud or shadow class)
    demo.json                             the DemoSpec and grid that produced the catalog

All hrefs are absolute paths computed from the final ``out_dir``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from tqdm import tqdm

from pipeline.atomic import atomic_path
from pipeline.synthetic.landscape import class_map_at
from pipeline.synthetic.qa import QA_NODATA, SR_NODATA
from pipeline.synthetic.scenes import Scene, demo_landscape, render_scene
from pipeline.synthetic.schedule import acquisition_schedule
from pipeline.synthetic.spec import DEMO_CLASSES, DemoGrid, DemoSpec, demo_grid
from pipeline.synthetic.stac_items import SR_ASSETS, asset_filename, build_collection, build_item, item_id

log = logging.getLogger(__name__)

COG_BLOCKSIZE = 256


def write_cog(
    path: Path, data: np.ndarray, grid: DemoGrid, *, nodata: int, resampling: str = "nearest",
    colormap: dict[int, tuple[int, int, int, int]] | None = None, tags: dict[str, str] | None = None,
) -> None:
    """Write one band ``data`` (y, x) (uint8 / uint16) as a deflate-compressed COG on ``grid``."""
    h, w = data.shape
    if (h, w) != grid.shape:
        raise ValueError(f"array shape {(h, w)} differs from the grid shape {grid.shape}")
    profile: dict[str, Any] = {
        "driver": "COG", "width": w, "height": h, "count": 1, "dtype": data.dtype.name,
        "crs": grid.crs, "transform": grid.transform, "nodata": nodata, "compress": "DEFLATE",
        "predictor": "YES", "blocksize": COG_BLOCKSIZE, "overview_resampling": resampling,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        if colormap is not None:
            dst.write_colormap(1, colormap)
        if tags:
            dst.update_tags(**tags)


def _hex_rgba(color: str) -> tuple[int, int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16), 255


STATIC_LABELS = "land_cover.tif"
LABEL_COLORMAP: dict[int, tuple[int, int, int, int]] = {
    0: (0, 0, 0, 0), **{int(c["id"]): _hex_rgba(str(c["color"])) for c in DEMO_CLASSES}
}


def _write_scene(scene: Scene, iid: str, tmp: Path, final: Path, spec: DemoSpec, grid: DemoGrid) -> dict[str, Any]:
    asset_dir = tmp / "assets" / iid
    asset_dir.mkdir(parents=True)
    hrefs: dict[str, str] = {}
    for b, key in enumerate(SR_ASSETS):
        name = asset_filename(iid, key)
        write_cog(asset_dir / name, scene.sr[b], grid, nodata=SR_NODATA, resampling="average")
        hrefs[key] = (final / "assets" / iid / name).as_uri()
    name = asset_filename(iid, "qa_pixel")
    write_cog(asset_dir / name, scene.qa_pixel, grid, nodata=QA_NODATA)
    hrefs["qa_pixel"] = (final / "assets" / iid / name).as_uri()
    when = scene.acquisition.datetime
    write_cog(
        tmp / "labels" / f"{iid}.tif", scene.labels, grid, nodata=0, colormap=LABEL_COLORMAP,
        tags={"item_id": iid, "datetime": when.isoformat(), "classes": json.dumps(list(DEMO_CLASSES))},
    )
    return build_item(
        scene.acquisition, spec, grid, asset_hrefs=hrefs, cloud_cover=scene.cloud_cover,
        cloud_cover_land=scene.cloud_cover_land, item_href=str(final / "items" / f"{iid}.json"),
        collection_href=str(final / "collection.json"),
    )


def _dump(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")


def generate_demo_catalog(out_dir: str | os.PathLike[str], spec: DemoSpec | None = None) -> Path:
    """Generate the synthetic Landsat C2 L2 demo catalog of ``spec`` into ``out_dir``.

    An existing ``out_dir`` is replaced atomically (nothing is half-written on failure).

    Returns:
        ``out_dir`` as an absolute path.
    """
    spec = DemoSpec() if spec is None else spec
    final = Path(out_dir).resolve()
    grid = demo_grid(spec)
    land = demo_landscape(spec)
    schedule = acquisition_schedule(spec)
    log.info("generating %d synthetic scenes of %dx%d px (seed %d) into %s",
             len(schedule), spec.size, spec.size, spec.seed, final)
    with atomic_path(final) as tmp:
        for sub in ("items", "assets", "labels"):
            (tmp / sub).mkdir(parents=True)
        items: list[dict[str, Any]] = []
        label_index = []
        for acq in tqdm(schedule, desc="demo scenes", unit="scene", disable=None):
            scene = render_scene(land, acq, spec)
            iid = item_id(acq, spec)
            item = _write_scene(scene, iid, tmp, final, spec, grid)
            _dump(tmp / "items" / f"{iid}.json", item)
            items.append(item)
            label_index.append({"item_id": iid, "datetime": item["properties"]["datetime"],
                                "href": str(final / "labels" / f"{iid}.tif")})
        item_hrefs = [str(final / "items" / f"{it['id']}.json") for it in items]
        _dump(tmp / "collection.json",
              build_collection(items, collection_href=str(final / "collection.json"), item_hrefs=item_hrefs))
        _dump(tmp / "labels" / "labels.json", {"classes": list(DEMO_CLASSES), "nodata": 0, "labels": label_index})
        span = float((spec.end_date - spec.start_date).days)
        write_cog(tmp / STATIC_LABELS, class_map_at(land, span), grid, nodata=0, colormap=LABEL_COLORMAP,
                  tags={"description": f"land cover at the end of the series ({spec.end}), no date: static labels",
                        "classes": json.dumps(list(DEMO_CLASSES))})
        _dump(tmp / "demo.json", {
            "spec": dataclasses.asdict(spec),
            "grid": {"crs": grid.crs, "transform": list(grid.transform)[:6], "shape": list(grid.shape),
                     "bbox_lonlat": list(grid.bbox_lonlat)},
        })
    log.info("wrote %d items to %s", len(items), final)
    return final
