"""Zarr stores of the pipeline: atomic writes and validated reads.

Layouts (all stores carry the grid as attrs ``crs`` (e.g. ``"EPSG:32649"``) and
``transform`` (GDAL affine, 6 floats: a, b, c, d, e, f) plus ``y``/``x`` coordinates of pixel
centres in that CRS):

``cube.zarr`` (stage ``pipeline.cube``)
    ``reflectance`` (time, band, y, x) float32, unitless surface reflectance (scale/offset
    applied), NaN where the asset had nodata; cloudy pixels keep their values. Chunks of one
    date, all bands and ``cube.chunk`` pixels a side.
    ``qa`` (time, y, x) uint16, the raw quality asset (0 where missing); absent when the
    catalog has no quality band (``sensor.qa: null``, attrs ``qa_decoding`` null).
    ``valid`` (time, y, x) bool, True for a clear observation per the QA decoding (without a
    quality band: every band holds data, i.e. is not its nodata).
    ``valid_fraction`` (time,) float32, share of valid pixels per date.
``composite.zarr`` (stage ``pipeline.composite``, with ``cube.period``)
    The cube on a regular time grid (:mod:`pipeline.timegrid`): ``time`` = step start
    (datetime64[ns]); ``reflectance`` (time, band, y, x) float32 composite of the step's clear
    observations, filled in time where it has none (``cube.fill``), NaN where never clear;
    ``valid`` (time, y, x) bool, the step has >= 1 clear observation (not filled);
    ``clear_count`` (time, y, x) uint16; ``valid_fraction`` (time,) float32; ``aoi_mask``;
    ``item_ids`` per step (comma-joined, "" when empty); no ``qa``; attrs of the cube plus
    ``time_grid`` (period, composite, fill, start, end, steps, step_ends,
    acquisitions_per_step, empty_steps, warning).
``features.zarr`` (stage ``pipeline.features``)
    ``features`` (time, channel, y, x) float16, ``valid`` (time, y, x) bool.
``labels.zarr`` (stage ``pipeline.labels``)
    ``labels`` (time, y, x) uint8 class ids of the class table, 0 = unlabelled (ignored): the
    training labels (label scarcity applied); ``reference`` (time, y, x) uint8, every label of
    the source (evaluation); ``split`` (y, x) uint8 test design region, 0 train / 1 test /
    2 buffer; ``fold`` (y, x) int8 cross-validation fold of the pixel's block (-1 = no label);
    attrs ``design`` (:mod:`pipeline.split.design`).

Completion manifest: every store written here ends with ``.pipeline-complete.json`` (number
and bytes of its files), written last, before the store is renamed into place, and its root
attrs name it (``completion_manifest``). A store whose files no longer add up - typically a
run killed while Snakemake was deleting the old store before a rerun (``shutil.rmtree`` is not
atomic) - is refused by :func:`open_store` and set aside by :func:`set_aside_incomplete_stores`
(called by the Snakefile), so Snakemake rebuilds it instead of passing half a store downstream
(a Zarr array reads missing chunks as fill values, silently).

Stores on object storage: every ``path`` here may also be an fsspec URL
(``s3://bucket/prefix/features.zarr``; :mod:`pipeline.raster.object_store`, which lists the
environment variables holding credentials and endpoints). There is no rename there: the old
store is deleted (its manifest first), the new one written in place and its manifest, counting
the objects listed under the URL, written last - a reader sees the store complete only once the
manifest is there and the objects add up. :func:`upload_store` puts a finished local store there
the same way.

Encodings: :func:`cube_encoding`, :func:`features_encoding` and :func:`labels_encoding` are the
one place that chooses the codecs and chunks of the stores; the stages pass them to the writes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import xarray as xr
import zarr
from zarr.codecs import BloscCodec

from pipeline.atomic import TMP_MARK, atomic_path
from pipeline.errors import GridError, PipelineError
from pipeline.raster import object_store
from pipeline.raster.object_store import is_url

log = logging.getLogger(__name__)

# Band names and item ids are short strings: Zarr v3 stores them as fixed-length UTF-32, which
# zarr-python flags as not yet in the v3 spec; xarray reads them back exactly.
warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")


MANIFEST_NAME = ".pipeline-complete.json"
MANIFEST_ATTR = "completion_manifest"


# not part of the data: the manifest itself, and the file Snakemake touches in directory outputs
_NOT_COUNTED = (MANIFEST_NAME, ".snakemake_timestamp")


def _inventory(store: Path) -> tuple[int, int]:
    """(number of files, total bytes) of ``store``, its manifest and Snakemake's timestamp left out."""
    files = size = 0
    for root, _dirs, names in os.walk(store):
        for name in names:
            if name in _NOT_COUNTED and Path(root) == store:
                continue
            files += 1
            size += os.stat(os.path.join(root, name)).st_size
    return files, size


def _url_inventory(url: str) -> tuple[int, int]:
    """:func:`_inventory` of the store at the fsspec URL ``url`` (its objects, listed afresh)."""
    sizes = [size for name, size in object_store.list_files(url).items() if name not in _NOT_COUNTED]
    return len(sizes), sum(sizes)


def seal_store(store: str | os.PathLike[str]) -> None:
    """Write the completion manifest of a finished store: the last write before its rename.

    The store's root attrs must already name the manifest (``completion_manifest``: see
    :func:`manifest_attrs`). On object storage (``store`` an fsspec URL) it is written last,
    with no rename after it.
    """
    if is_url(store):
        files, size = _url_inventory(str(store))
        object_store.write_text(str(store), MANIFEST_NAME, json.dumps({"files": files, "bytes": size}))
        return
    store = Path(store)
    files, size = _inventory(store)
    with open(store / MANIFEST_NAME, "w", encoding="utf-8") as fh:
        json.dump({"files": files, "bytes": size}, fh)
        fh.flush()
        os.fsync(fh.fileno())


def manifest_attrs() -> dict[str, str]:
    """Root attrs announcing the completion manifest (so its absence is noticed)."""
    return {MANIFEST_ATTR: MANIFEST_NAME}


def store_problem(path: str | os.PathLike[str]) -> str | None:
    """Why the store at ``path`` is not a complete store written by the pipeline, or None.

    Stores without the ``completion_manifest`` attr (written by other tools or older versions)
    are not checked. ``path`` may be an fsspec URL (module docstring).
    """
    url = is_url(path)
    store: str | Path = str(path) if url else Path(path)
    if url and not object_store.exists(str(store)):
        return "nothing is stored under that URL"
    if not url and not Path(store).is_dir():
        return "it is not a folder"
    try:
        attrs = dict(zarr.open_group(store, mode="r").attrs)
    except Exception as exc:  # noqa: BLE001 - any failure to read the root metadata means the same
        return f"its root metadata cannot be read ({type(exc).__name__})"
    if MANIFEST_ATTR not in attrs:
        return None
    try:
        text = (object_store.read_text(str(store), MANIFEST_NAME) if url
                else (Path(store) / MANIFEST_NAME).read_text(encoding="utf-8"))
        manifest = json.loads(text)
        expected = (int(manifest["files"]), int(manifest["bytes"]))
    except FileNotFoundError:
        return "its completion manifest is missing"
    except (ValueError, KeyError, TypeError):
        return "its completion manifest is unreadable"
    got = _url_inventory(str(store)) if url else _inventory(Path(store))
    if got != expected:
        return (f"it holds {got[0]} files ({got[1]} bytes) of the {expected[0]} files ({expected[1]} bytes) "
                f"it was written with")
    return None


def set_aside_incomplete_stores(root: str | os.PathLike[str], *, locks: str | os.PathLike[str] | None = None) -> list[Path]:
    """Rename every incomplete ``*.zarr`` store under ``root`` to a ``.tmp-`` sibling (which the
    next write of that path deletes), so that Snakemake sees it missing and rebuilds it.

    Does nothing while ``locks`` (Snakemake's ``.snakemake/locks``) holds a lock: another run may
    be deleting or writing a store right now. Returns the stores set aside.
    """
    base = Path(root)
    if locks is not None and Path(locks).is_dir() and any(Path(locks).iterdir()):
        return []
    moved: list[Path] = []
    for dirpath, dirnames, _files in os.walk(base):
        stores = [d for d in dirnames if d.endswith(".zarr") and not d.startswith(TMP_MARK)]
        dirnames[:] = [d for d in dirnames if not d.endswith(".zarr") and not d.startswith(TMP_MARK)]
        for name in stores:
            store = Path(dirpath) / name
            problem = store_problem(store)
            if problem is None:
                continue
            aside = store.with_name(f"{TMP_MARK}{name}.incomplete")
            if aside.exists():  # left by an earlier recovery
                shutil.rmtree(aside, ignore_errors=True)
            os.replace(store, aside)
            log.warning("Zarr store %s is incomplete (%s: a run was killed while it was written or removed); "
                        "set aside as %s, it will be rebuilt", store, problem, aside.name)
            moved.append(store)
    return moved


LABELS_CHUNK_YX = 1024  # y/x chunk edge of labels.zarr (one date per chunk)


def cube_encoding(cube: xr.Dataset) -> dict[str, dict[str, Any]]:
    """``to_zarr`` encoding of ``cube.zarr``: Blosc zstd level 1 with bit shuffle for
    ``reflectance``, ``qa`` and ``valid``, those of them ``cube`` holds (no ``qa`` without
    ``sensor.qa``); chunks are the dask chunks of ``cube``.

    Chosen by measurement (bench/README.md, cube stage, fifth session of 2026-12-02): level 1
    compresses reflectance 1.8-2.7x faster than level 3 (300-390 against 80-220 MB/s per core)
    and the real Landsat 8 and Sentinel-2 cubes 12-14 % smaller (+1 % on the synthetic demo).
    Stores written at level 3 still read (the codec is in the array metadata)."""
    return {v: {"compressors": [BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle")]}
            for v in ("reflectance", "qa", "valid") if v in cube.data_vars}


def features_encoding() -> dict[str, Any]:
    """Encoding of the ``features`` variable of ``features.zarr``: Blosc lz4 level 5 with bit
    shuffle; chunks are its dask chunks (1 date, all channels, ``chunk`` x ``chunk``).

    Chosen by measurement (bench/README.md, feature stage, 2026-12-02): float16 stem features
    compress by only 10-13 % with any codec; lz4 + bit shuffle writes them about 2x faster than
    the former zstd level 3 + byte shuffle at the same size (+-3 %). Stores written with zstd
    are still read (the codec is in the array metadata)."""
    return {"compressors": (BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),)}


def labels_encoding(labels: xr.Dataset) -> dict[str, dict[str, Any]]:
    """``to_zarr`` encoding of ``labels.zarr``: ``labels`` and ``reference`` (time, y, x) in
    chunks of one date and at most :data:`LABELS_CHUNK_YX` pixels a side (default codec)."""
    h, w = labels["labels"].shape[1:]
    chunks = (1, min(h, LABELS_CHUNK_YX), min(w, LABELS_CHUNK_YX))
    return {"labels": {"chunks": chunks}, "reference": {"chunks": chunks}}


def write_zarr_atomic(ds: xr.Dataset, path: str | os.PathLike[str], **to_zarr_kwargs: object) -> Path | str:
    """Write ``ds`` (lazy or in memory) to a Zarr store at ``path`` via a temporary sibling.

    The computation streams chunk by chunk into the temporary store (bounded memory for dask
    inputs); the completion manifest is written after every chunk and the consolidated metadata,
    and only then is the store renamed into place.

    ``path`` an fsspec URL (``s3://bucket/x/features.zarr``): no rename on object storage, so the
    old store is deleted first (manifest first), the chunks streamed straight to the URL by the
    dask workers and the manifest written last; returns the URL. Until then readers refuse the
    store (:func:`open_store`); a killed run leaves an incomplete store that the next run replaces.
    """
    if is_url(path):
        url = str(path)
        object_store.remove(url, first=MANIFEST_NAME)
        ds.assign_attrs(manifest_attrs()).to_zarr(url, mode="w", consolidated=True, **to_zarr_kwargs)  # type: ignore[call-overload]
        seal_store(url)
        log.info("wrote %s", url)
        return url
    final = Path(path)
    with atomic_path(final) as tmp:
        ds.assign_attrs(manifest_attrs()).to_zarr(tmp, mode="w", consolidated=True, **to_zarr_kwargs)  # type: ignore[call-overload]
        seal_store(tmp)
    log.info("wrote %s", final)
    return final


def upload_store(local: str | os.PathLike[str], url: str) -> str:
    """Put the finished local store ``local`` (sealed by :func:`seal_store`) at the fsspec URL
    ``url``: what was there is deleted (manifest first), the files are uploaded and the manifest
    last; the upload is checked against the manifest. Returns ``url``."""
    object_store.upload_dir(local, url, last=MANIFEST_NAME)
    problem = store_problem(url)
    if problem is not None:
        raise PipelineError(f"the upload of {local} to {url} is incomplete: {problem}; rerun the stage")
    log.info("wrote %s", url)
    return url


def open_store(path: str | os.PathLike[str], *, required: tuple[str, ...] = ()) -> xr.Dataset:
    """Open a pipeline Zarr store lazily and check that it is complete and that ``required``
    variables are present. ``path`` may be an fsspec URL (``s3://bucket/x/cube.zarr``)."""
    url = is_url(path)
    p: str | Path = str(path) if url else Path(path)
    if not (object_store.exists(str(p)) if url else Path(p).exists()):
        raise PipelineError(f"Zarr store {p} does not exist; run the stage that builds it first")
    problem = store_problem(p)
    if problem is not None:
        fix = ("delete it and rerun the stage that writes it (a rerun replaces the whole store; stores on "
               "object storage are not set aside by the Snakefile)" if url else
               "delete it and rerun - `snakemake --rerun-incomplete <target>` sets it aside and rebuilds it")
        raise PipelineError(
            f"Zarr store {p} is incomplete: {problem} (a run was killed while it was being written or removed); "
            f"{fix}"
        )
    ds = xr.open_zarr(p, consolidated=None)
    missing = [v for v in required if v not in ds.variables]
    if missing:
        raise PipelineError(
            f"Zarr store {p} lacks {missing}; it was written by another version of the "
            f"pipeline or another stage - delete it and rerun"
        )
    if "crs" not in ds.attrs or "transform" not in ds.attrs:
        raise GridError(f"Zarr store {p} carries no 'crs'/'transform' attrs; rebuild it")
    return ds
