"""Stage ``vote``: object-based voting of a finished map (relearning paper; :mod:`pipeline.objects.voting`).

Usage::

    python -m pipeline.vote --map results/x/maps/semi_convlstm --features results/x/features.zarr \\
        --options '{"voting": "majority", "segment_method": "felzenszwalb"}' \\
        --out results/x/maps/semi_convlstm/voted

Reads the map folder's ``classes.tif`` (uint8 class ids, 0 = nodata), ``probabilities.tif``
(uint8 percent per class, 255 = nodata) and ``item.json`` (the map date), segments that date's
PCA composite of ``features.zarr`` (:mod:`pipeline.objects.segments`; the store must be on the
map's grid), votes it (:mod:`pipeline.objects.voting`) and writes into ``--out``: ``classes.tif``
(the voted classes, same colour table, class names and overviews as the map), ``classes.qml``
and ``segments.gpkg`` (layer ``segments``: one polygon per segment with its class, mean
probability and area). ``--options`` holds the voting keys of the predict options
(:data:`pipeline.objects.options.VOTING_KEYS`: ``voting``: majority | probability,
``segment_method``, ``segment_scale``, ``segment_size``; config ``voting.method`` and
``segmentation``). A separate stage, so changing the
voting reruns neither the prediction nor the training, and the voted map is evaluated like any
other map. This module holds only the command line and the file I/O.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from pipeline.atomic import atomic_path
from pipeline.cli import base_parser, run_stage
from pipeline.config import parse_options
from pipeline.errors import GridError, PredictionError
from pipeline.objects.options import voting_options
from pipeline.objects.voting import segment_polygons, vote_map
from pipeline.raster.cog import PROBABILITY_NODATA, write_class_cog
from pipeline.raster.object_store import store_path
from pipeline.raster.qgis_style import write_qml
from pipeline.raster.zarr_io import open_store

log = logging.getLogger(__name__)


def read_map_folder(map_dir: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any], list[dict[str, Any]], str]:
    """Classes (y, x) uint8 (0 = nodata), probabilities (K, y, x) float32 0..1 (NaN = nodata),
    the grid ({crs, transform}), the class table [{id, name, color}] and the map date
    (ISO, from item.json) of a map folder."""
    for name in ("classes.tif", "probabilities.tif", "item.json"):
        if not (map_dir / name).exists():
            raise PredictionError(f"{map_dir / name} is missing; predict the map first (rule predict_map)")
    with rasterio.open(map_dir / "classes.tif") as src:
        classes = src.read(1)
        grid = {"crs": src.crs.to_string(), "transform": list(src.transform)[:6]}
        colormap = src.colormap(1)
    with rasterio.open(map_dir / "probabilities.tif") as src:
        raw = src.read()
        band_names = list(src.descriptions)
    probs = np.where(raw == PROBABILITY_NODATA, np.nan, raw.astype(np.float32) / 100.0).astype(np.float32)
    item = json.loads((map_dir / "item.json").read_text())
    when = str(item["properties"]["datetime"])[:10]
    table = _class_table(item, band_names, colormap)
    return classes, probs, grid, table, when


def _class_table(item: dict[str, Any], band_names: list[str | None],
                 colormap: dict[int, tuple[int, ...]]) -> list[dict[str, Any]]:
    """The class table of the map: from the STAC item's classification extension, the colour
    table for the colours."""
    entries = item.get("assets", {}).get("classes", {}).get("classification:classes") or []
    table = []
    for e in entries:
        cid = int(e["value"])
        if cid == 0:
            continue
        rgba = colormap.get(cid, (0, 0, 0, 255))
        color = e.get("color_hint") or "".join(f"{v:02x}" for v in rgba[:3])
        name = e.get("title") or e.get("description") or e.get("name")  # name: sanitised for STAC
        table.append({"id": cid, "name": str(name), "color": f"#{color.lstrip('#')}"})
    if not table or len(table) != len(band_names):
        raise PredictionError(f"the map's item.json lists {len(table)} classes but probabilities.tif has "
                              f"{len(band_names)} bands; predict the map again with this version")
    return table


def run_vote(map_dir: Path, features_path: Path | str, out_dir: Path, options: dict[str, Any]) -> Path:
    """Vote the map in ``map_dir`` over the segments of its date; write ``out_dir``."""
    method, seg_options = voting_options(options)
    classes, probs, grid, table, when = read_map_folder(map_dir)
    features = open_store(features_path, required=("features",))
    if (features.sizes["y"], features.sizes["x"]) != classes.shape or \
            not np.allclose(features.attrs["transform"][:6], grid["transform"], atol=1e-6):
        raise GridError(f"features store {features_path} ({features.sizes['y']} x {features.sizes['x']}, transform "
                        f"{features.attrs['transform'][:6]}) is not on the grid of {map_dir / 'classes.tif'} "
                        f"({classes.shape}, {grid['transform']}); vote with the features the map was made from")
    ids = np.array([c["id"] for c in table], dtype=np.uint8)
    voted, segments = vote_map(classes, probs, features, when, class_ids=ids, method=method, segment_options=seg_options)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_class_cog(voted, out_dir / "classes.tif", class_table=table, **grid)
    write_qml(out_dir / "classes.qml", table)
    gdf = segment_polygons(voted, segments, class_table=table, probabilities=probs, **grid)
    with atomic_path(out_dir / "segments.gpkg") as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The filename extension should be 'gpkg'")  # temporary name
        gdf.to_file(tmp, driver="GPKG", layer="segments")
    changed = int((voted != classes).sum())
    log.info("voting (%s, %s segments of %s): %d segments, %d of %d mapped pixels changed class", method,
             seg_options.method, when, len(gdf), changed, int((classes > 0).sum()))
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--map", required=True, type=Path, help="map folder (classes.tif, probabilities.tif, item.json)")
    parser.add_argument("--features", required=True, type=store_path, help="features.zarr the map was predicted from")
    parser.add_argument("--out", required=True, type=Path, help="folder of the voted map")
    parser.add_argument("--options", default="{}", help="the voting keys of the predict options as JSON (config voting.method, segmentation.*)")
    args = parser.parse_args(argv)

    def work() -> None:
        run_vote(args.map, args.features, args.out, parse_options(args.options, what="vote"))

    return run_stage(work, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
