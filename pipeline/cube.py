"""Stage ``cube``: frozen STAC items -> ``cube.zarr`` on one grid (odc-stac, dask, Zarr).

``python -m pipeline.cube --items results/demo/items.json --name demo --aoi '<aois.demo JSON>'
--options '<cube JSON>' --sensor '<sensor JSON>' --catalog '<catalog JSON>' --out results/demo/cube.zarr``

Dates are computed and written one at a time (each date streamed chunk by chunk into the
store, so memory stays bounded by the chunk size), into a temporary store renamed into place at
the end. A date whose assets cannot be read stops the stage with the item ids (``on_error:
raise``) or is dropped and recorded in the store's ``skipped`` attribute (``on_error: skip``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pystac
import xarray as xr
import zarr
from tqdm import tqdm

from pipeline.atomic import atomic_path
from pipeline.cli import base_parser, dask_scheduler, redact_secrets, run_stage
from pipeline.config import parse_options
from pipeline.errors import AssetReadError, CubeError
from pipeline.raster.gdal_env import configure_gdal
from pipeline.raster.load import CubeOptions, build_cube
from pipeline.raster.object_store import is_url, store_path
from pipeline.raster.sensors import SensorOptions
from pipeline.raster.zarr_io import (  # also: zarr warning filters
    cube_encoding,
    manifest_attrs,
    seal_store,
    upload_store,
)
from pipeline.stac.aoi import aoi_from_config
from pipeline.stac.search import CatalogOptions
from pipeline.tiling.windows import Tile

log = logging.getLogger(__name__)


def read_items(path: str | os.PathLike[str]) -> list[pystac.Item]:
    """Read a frozen ItemCollection (``items.json``)."""
    try:
        collection = pystac.ItemCollection.from_file(str(path))
    except Exception as exc:  # noqa: BLE001
        raise CubeError(f"cannot read frozen items {path} ({exc}); rerun the search stage") from exc
    items = list(collection)
    if not items:
        raise CubeError(f"{path} holds no item; rerun the search with wider dates or cloud limit")
    return items


BATCH_BYTES = 256 * 2**20


def dates_per_batch(cube: xr.Dataset) -> int:
    """Dates written per ``to_zarr`` call: about :data:`BATCH_BYTES` of float32 reflectance.

    Batching amortises dask's per-graph overhead on small AOIs; large scenes go one date at a
    time. Memory stays bounded either way, because dask streams chunk by chunk into the store.
    """
    per_date = cube.sizes["band"] * cube.sizes["y"] * cube.sizes["x"] * 4
    return int(min(max(BATCH_BYTES // max(per_date, 1), 1), 64))


def _write_dates(cube: xr.Dataset, store: Path, dates: range) -> Exception | None:
    """Write the ``dates`` (consecutive indices) of ``cube`` into ``store``; return the read error if any."""
    part = cube.isel(time=slice(dates.start, dates.stop)).drop_vars(["x", "y", "band"], errors="ignore")
    try:
        part.to_zarr(store, region={"time": slice(dates.start, dates.stop)}, consolidated=False)
    except Exception as exc:  # noqa: BLE001 - GDAL/rasterio/odc read errors of any type
        return exc
    return None


def write_cube(cube: xr.Dataset, out: Path | str, *, on_error: str, min_valid_fraction: float,
               left_out: list[str] | None = None) -> list[str]:
    """Write ``cube`` (batches of dates) to ``out`` atomically; return what was left out, with reasons.

    ``left_out``: items already dropped before loading (recorded in the same ``skipped`` attribute).

    ``out`` an fsspec URL (``s3://bucket/x/cube.zarr``): the cube is written exactly as for a local
    path into a local staging store (under ``$TMPDIR``; with dask workers on other machines, point
    ``TMPDIR`` at a shared file system), then uploaded (:func:`pipeline.raster.zarr_io.upload_store`:
    old store deleted, files put, manifest last). Writing the regions straight to the bucket would
    save that disk space and one pass, but dropping failed or cloudy dates rewrites the store, which
    object storage (no rename) could only do by a second upload; staging also makes the stored
    bytes identical to a local run's.
    """
    if is_url(out):
        with tempfile.TemporaryDirectory(prefix="pipeline-cube-") as staging:
            local = Path(staging) / "cube.zarr"
            skipped = write_cube(cube, local, on_error=on_error, min_valid_fraction=min_valid_fraction,
                                 left_out=left_out)
            upload_store(local, str(out))
        return skipped
    encoding = cube_encoding(cube)
    skipped: list[str] = list(left_out or [])
    failed: set[int] = set()
    cube = cube.assign_attrs(manifest_attrs())
    with atomic_path(out) as tmp:
        cube.to_zarr(tmp, mode="w", compute=False, consolidated=False, encoding=encoding)
        timed = [v for v in cube.data_vars if "time" in cube[v].dims] + ["item_ids"]
        n = cube.sizes["time"]
        step = dates_per_batch(cube)
        with tqdm(total=n, desc="cube dates", unit="date", disable=None) as bar:
            for start in range(0, n, step):
                batch = range(start, min(start + step, n))
                if _write_dates(cube[timed], tmp, batch) is not None:
                    # something in the batch failed: find the culprit(s) date by date
                    for i in batch:
                        exc = _write_dates(cube[timed], tmp, range(i, i + 1))
                        if exc is None:
                            continue
                        date, ids = str(cube.time.values[i])[:10], str(cube.item_ids.values[i])
                        cause = redact_secrets(str(exc))  # signed hrefs must not reach logs or attrs
                        if on_error == "raise":
                            raise AssetReadError(
                                f"cannot read the assets of {date} (items {ids}): {cause}; the file may be "
                                f"truncated, corrupt or its server refuses range requests. Retry later, or set "
                                f"cube.on_error: skip to leave such dates out (they are recorded in the cube's "
                                f"'skipped' attribute)"
                            ) from exc
                        reason = f"{date} ({ids}): {type(exc).__name__}: {cause[:300]}"
                        log.warning("skipping unreadable date %s", reason)
                        skipped.append(reason)
                        failed.add(i)
                bar.update(len(batch))
        fractions = xr.open_zarr(tmp, consolidated=False)["valid_fraction"].values
        low = [i for i, f in enumerate(fractions) if f < min_valid_fraction and i not in failed]
        for i in low:
            skipped.append(f"{str(cube.time.values[i])[:10]}: valid fraction {fractions[i]:.3f} < {min_valid_fraction}")
        keep = [i for i in range(cube.sizes["time"]) if i not in failed and i not in low]
        if not keep:
            raise CubeError(
                "no date left in the cube: " + "; ".join(skipped[:5]) + "; lower cube.min_valid_fraction, "
                "raise catalog.max_cloud_cover or widen the dates"
            )
        attrs = {"skipped": skipped}
        if len(keep) < cube.sizes["time"]:
            stored = xr.open_zarr(tmp, consolidated=False).isel(time=keep)
            stored.attrs.update(attrs)
            with atomic_path(tmp.with_name(tmp.name + ".kept")) as tmp2:
                stored.to_zarr(tmp2, mode="w", consolidated=True)
            shutil.rmtree(tmp)
            os.replace(tmp.with_name(tmp.name + ".kept"), tmp)
        else:
            group = zarr.open_group(tmp, mode="r+")
            group.attrs.update(attrs)
            zarr.consolidate_metadata(tmp)
        seal_store(tmp)  # last: the store's files are all there
    log.info("wrote %s with %d dates (%d left out)", out, len(keep), len(skipped))
    return skipped


def run_cube(items_path: Path, name: str, aoi_entry: dict[str, Any], options: CubeOptions, sensor: SensorOptions,
             catalog: CatalogOptions, out: Path, *, threads: int = 1, tile: Tile | None = None) -> Path:
    """Load the frozen items of one AOI and write its ``cube.zarr``.

    ``tile``: load only that tile's window of the AOI grid (:mod:`pipeline.tiling.layout`) and keep
    every date: which dates are kept (``min_valid_fraction``) is decided for the whole AOI by
    :mod:`pipeline.tiling.plan`, so that all tiles agree.
    """
    aoi = aoi_from_config(name, aoi_entry)
    items = read_items(items_path)
    gdal = {"retries": catalog.retries, "backoff": catalog.backoff, "timeout": catalog.timeout}
    configure_gdal(**gdal)
    if tile is not None:
        options = dataclasses.replace(options, min_valid_fraction=0.0)
    cube, skipped_items = build_cube(items, aoi, sensor, options, signing=catalog.signing,
                                     window=tile.window.slices if tile is not None else None)
    if tile is not None:
        cube.attrs.update(tile=tile.id, tile_window=tile.to_dict()["window"], tile_core=tile.to_dict()["core"])
    log.info("cube %s: %d dates x %d bands x %d x %d px in %s", name, cube.sizes["time"], cube.sizes["band"],
             cube.sizes["y"], cube.sizes["x"], cube.attrs["crs"])
    with dask_scheduler(threads, on_client=lambda client: configure_gdal(**gdal, client=client)):
        write_cube(cube, out, on_error=options.on_error, min_valid_fraction=options.min_valid_fraction,
                   left_out=skipped_items)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--items", required=True, type=Path, help="frozen items.json of the search stage")
    parser.add_argument("--name", required=True, help="AOI name")
    parser.add_argument("--aoi", required=True, help="the aois.<name> config entry as JSON")
    parser.add_argument("--options", default="{}", help="the cube config section as JSON")
    parser.add_argument("--sensor", default="{}", help="the sensor config section as JSON")
    parser.add_argument("--catalog", default="{}", help="the catalog config section as JSON (signing, retries)")
    parser.add_argument("--out", required=True, type=store_path, help="cube.zarr to write (a path or an fsspec "
                        "URL such as s3://bucket/x/cube.zarr)")
    parser.add_argument("--threads", type=int, default=1, help="dask threads")
    parser.add_argument("--tile", default=None, help="one tile of the AOI layout as JSON (pipeline.tiling.layout); "
                        "default: the whole AOI")
    args = parser.parse_args(argv)

    def work() -> None:
        run_cube(
            args.items, args.name, parse_options(args.aoi, what=f"aoi {args.name}"),
            CubeOptions.from_options(parse_options(args.options, what="cube")),
            SensorOptions.from_options(parse_options(args.sensor, what="sensor")),
            CatalogOptions.from_options(parse_options(args.catalog, what="catalog")),
            args.out, threads=args.threads,
            tile=Tile.from_dict(parse_options(args.tile, what="tile")) if args.tile else None,
        )

    return run_stage(work, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
