"""Build the labels of a cube: read label rasters or vectors, match dates, apply scarcity.

The result is the ``labels.zarr`` dataset: ``labels`` dims (time, y, x) uint8 class ids of
the class table, 0 = unlabelled (ignored), on the cube's grid and time coordinate. Labels of
a date that matches no cube date are dropped, logged and listed in the attrs
(``unmatched_label_dates``). Static vector labels (no date) apply to every cube date; dated
labels overwrite them where both label a pixel. Cloud/shadow pixels of the cube are *not*
masked: cloud and shadow may be classes of the table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from rasterio.crs import CRS

from pipeline.errors import ConfigError, LabelError
from pipeline.reference.classes import ClassTable
from pipeline.reference.codes import LabelCodes, codes_to_class_ids
from pipeline.reference.dates import date_from_name, match_dates, match_steps, parse_day
from pipeline.reference.options import LabelOptions
from pipeline.reference.rasterize import (
    CubeGrid,
    check_vector_overlap,
    grid_from_store,
    raster_to_grid,
    rasterize_features,
)
from pipeline.reference.scarcity import apply_scarcity

log = logging.getLogger(__name__)

RASTER_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class LabelLayers:
    """Labels on the cube grid before date matching: ``dated`` (day, (y, x) uint8) pairs and
    ``static`` ((y, x) uint8 applying to every date, or None)."""

    dated: list[tuple[np.datetime64, np.ndarray]]
    static: np.ndarray | None


def resolve_format(source: Path, fmt: str) -> str:
    """``"raster"`` or ``"vector"`` for ``source`` given the ``format`` option."""
    if fmt != "auto":
        return fmt
    if source.is_dir() or source.suffix.lower() in RASTER_SUFFIXES:
        return "raster"
    return "vector"


def list_label_rasters(
    source: str | os.PathLike[str], *, dates: dict[str, str] | None = None
) -> list[tuple[np.datetime64, Path]]:
    """Label rasters under ``source`` (a folder of GeoTIFFs or one GeoTIFF) with their days.

    A file's day comes from ``dates[file name]`` when given, else from its name. Sorted by
    day. Raises :class:`LabelError` when there is no raster, a ``dates`` entry names no file,
    or two rasters share a day.
    """
    src = Path(source)
    dates = dates or {}
    files = (
        sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
        if src.is_dir()
        else [src]
    )
    if not files:
        raise LabelError(f"label folder {src} holds no GeoTIFF (*.tif, *.tiff); check labels.source")
    missing = sorted(set(dates) - {p.name for p in files})
    if missing:
        raise LabelError(f"labels option 'dates' names files {missing} that are not in {src}")
    out: list[tuple[np.datetime64, Path]] = []
    for p in files:
        day = parse_day(dates[p.name], what=f"date of {p.name}") if p.name in dates else date_from_name(p.name)
        out.append((day, p))
    out.sort(key=lambda dp: dp[0])
    for (d0, p0), (d1, p1) in zip(out, out[1:]):
        if d0 == d1:
            raise LabelError(f"label rasters {p0.name} and {p1.name} share the date {d0}; merge them into one")
    return out


def read_raster_layers(
    source: str | os.PathLike[str],
    grid: CubeGrid,
    table: ClassTable,
    *,
    dates: dict[str, str] | None = None,
    codes: LabelCodes | None = None,
    static: bool = False,
) -> LabelLayers:
    """Every label raster of ``source`` reprojected onto ``grid`` (see :func:`raster_to_grid`);
    ``codes`` maps source codes to class ids (default: the rasters hold class ids). ``static``:
    ``source`` is one raster without a date, the static layer."""
    if static:
        src = Path(source)
        if src.is_dir():
            raise LabelError(f"labels.static needs one label raster, got the folder {src}; name the file in "
                             f"labels.source, or set labels.static: false for dated rasters")
        return LabelLayers(dated=[], static=raster_to_grid(src, grid, table, codes=codes))
    return LabelLayers(
        dated=[
            (day, raster_to_grid(p, grid, table, codes=codes)) for day, p in list_label_rasters(source, dates=dates)
        ],
        static=None,
    )


def _codes_and_names(values: pd.Series, what: str) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """Split a class attribute into codes and names: ``(is_code bool, codes int64, text)``.

    Numbers and integer strings are codes; any other string is a class name (``text``).
    """
    if values.isna().any():
        raise LabelError(f"{what}: {int(values.isna().sum())} feature(s) have no class; fill or drop them")
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        arr = values.to_numpy(dtype=np.float64)
        if np.any(arr != np.round(arr)):
            raise LabelError(f"{what} holds non-integer class ids; use integer codes or class names")
        return np.ones(arr.size, dtype=bool), arr.astype(np.int64), values.astype(str)
    text = values.astype(str).str.strip()
    is_code = text.str.fullmatch(r"[+-]?\d+").to_numpy(dtype=bool)
    numbers = np.array([int(t) if c else 0 for t, c in zip(text, is_code)], dtype=np.int64)
    return is_code, numbers, text


def _class_ids(values: pd.Series, table: ClassTable, what: str, codes: LabelCodes | None = None) -> np.ndarray:
    """Class ids (int64, 0 = unlabelled) from a vector attribute holding codes or class names.

    Codes (numbers, integer strings): ``codes.ignore_values`` -> 0, then ``codes.value_map``;
    without a map they must be class ids of ``table`` (0 included: an error). Other strings
    are class names of ``table``.
    """
    is_code, numbers, text = _codes_and_names(values, what)
    by_name = {n: i for i, n in zip(table.ids(), table.names())}
    unknown = sorted(set(text[~is_code]) - set(by_name))
    if unknown:
        raise LabelError(
            f"{what} holds class names {unknown[:10]} that are not in the class table "
            f"(names {table.names()}); fix the names or the classes config (numeric codes "
            "map through labels.value_map)"
        )
    ids = np.zeros(values.size, dtype=np.int64)
    ids[~is_code] = [by_name[t] for t in text[~is_code]]
    if is_code.any():
        ids[is_code] = codes_to_class_ids(
            numbers[is_code], table, codes or LabelCodes(), zero_is_unlabelled=False, what=what, unit="features"
        )
    return ids


def read_vector_layers(
    source: str | os.PathLike[str],
    grid: CubeGrid,
    table: ClassTable,
    *,
    class_field: str,
    date_field: str | None,
    codes: LabelCodes | None = None,
) -> LabelLayers:
    """Rasterize the label features of a vector file onto ``grid``, one layer per date.

    ``class_field`` holds codes (mapped by ``codes``; default: class ids) or class names;
    features whose code is ignored or maps to 0 are dropped. ``date_field`` holds the date
    (None, or an empty value, = static). Features in any CRS are reprojected to the grid CRS.
    """
    import geopandas as gpd

    path = Path(source)
    what = f"label vectors {path.name}"
    try:
        gdf = gpd.read_file(path)
    except Exception as exc:  # noqa: BLE001 - pyogrio/GDAL raise several types
        raise LabelError(f"cannot read {what} ({exc}); give a GeoPackage, GeoJSON or Shapefile") from exc
    if gdf.empty:
        raise LabelError(f"{what} holds no feature; check labels.source")
    if gdf.crs is None:
        raise LabelError(f"{what} has no CRS; write the file with its CRS (e.g. EPSG:4326)")
    columns = [c for c in gdf.columns if c != gdf.geometry.name]
    if class_field not in gdf.columns:
        raise LabelError(
            f"{what} has no attribute {class_field!r} (attributes {columns}); set labels.class_field"
        )
    if date_field is not None and date_field not in gdf.columns:
        raise LabelError(
            f"{what} has no attribute {date_field!r} (attributes {columns}); set labels.date_field, "
            "or set it to null for labels that apply to every date"
        )
    gdf, ids = _drop_unlabelled(gdf, _class_ids(gdf[class_field], table, what, codes), what)
    check_vector_overlap(tuple(gdf.total_bounds), CRS.from_user_input(gdf.crs), grid, what)
    geoms = gdf.geometry.to_crs(grid.crs)

    days = _feature_days(gdf, date_field, what)
    static_mask = np.isnat(days)
    static = None
    if static_mask.any():
        static = rasterize_features(geoms[static_mask], ids[static_mask], grid)
        log.info("%s: %d static feature(s) apply to every date", what, int(static_mask.sum()))
    dated = [
        (day, rasterize_features(geoms[days == day], ids[days == day], grid))
        for day in np.unique(days[~static_mask])
    ]
    return LabelLayers(dated=dated, static=static)


def _drop_unlabelled(gdf: pd.DataFrame, ids: np.ndarray, what: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The features (and their class ids) whose class id is not 0 (ignored codes, value_map 0)."""
    if not ids.any():
        raise LabelError(
            f"every feature of {what} is unlabelled after labels.ignore_values / labels.value_map "
            "(their codes are ignored or map to 0); map the codes to class ids in labels.value_map"
        )
    if ids.all():
        return gdf, ids
    log.info("%s: %d feature(s) dropped as unlabelled (ignore_values / value_map 0)", what, int((ids == 0).sum()))
    return gdf[ids > 0], ids[ids > 0]


def _feature_days(gdf: pd.DataFrame, date_field: str | None, what: str) -> np.ndarray:
    """The label day of each feature (datetime64[D], NaT = static: no date field or empty value)."""
    days = np.full(len(gdf), np.datetime64("NaT", "D"))
    if date_field is None:
        return days
    raw = gdf[date_field]
    for value in pd.unique(raw[raw.notna()]):
        mask = (raw == value).to_numpy()
        days[mask] = parse_day(value, what=f"{what} {date_field!r} value")
    return days


def stack_on_cube_dates(
    layers: LabelLayers, grid: CubeGrid, *, tolerance_days: int, static_steps: np.ndarray | None = None,
    step_ends: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Place the layers on the cube's time axis; the static layer on ``static_steps`` ((time,)
    bool, default every step). ``step_ends`` ((time,) datetime64, exclusive): the store is on a
    regular time grid, a dated layer goes to the step holding its day (:func:`match_steps`).

    Returns labels dims (time, y, x) uint8 (0 = unlabelled) and the unmatched label days
    (ISO strings). Raises :class:`LabelError` when layers exist but none matches a cube date.
    """
    t = grid.times.size
    labels = np.zeros((t, *grid.shape), dtype=np.uint8)
    if layers.static is not None:
        labels[np.ones(t, bool) if static_steps is None else static_steps] = layers.static
    days = [d for d, _ in layers.dated]
    match = (match_dates(days, grid.times, tolerance_days=tolerance_days) if step_ends is None
             else match_steps(days, grid.times, step_ends))
    for (day, layer), ti in sorted(zip(layers.dated, match.cube_index), key=lambda pair: pair[0][0]):
        if ti >= 0:
            np.copyto(labels[ti], layer, where=layer != 0)
    if layers.dated and layers.static is None and all(i < 0 for i in match.cube_index):
        cube_days = grid.times.astype("datetime64[D]")
        first, last = (str(cube_days.min()), str(cube_days.max())) if t else ("-", "-")
        raise LabelError(
            f"none of the {len(layers.dated)} label date(s) ({', '.join(match.unmatched[:5])}"
            f"{', ...' if len(match.unmatched) > 5 else ''}) matches a cube date ({t} dates, "
            f"{first} .. {last}) within {tolerance_days} day(s); raise labels.date_tolerance_days "
            "or use labels of the cube's dates"
        )
    return labels, list(match.unmatched)


def _read_layers(source: Path, grid: CubeGrid, table: ClassTable, options: LabelOptions) -> tuple[LabelLayers, str]:
    """The label layers of ``source`` on ``grid`` and the format read (raster or vector)."""
    if not source.exists():
        raise LabelError(f"labels source {source} does not exist; set labels.source to a label folder or file")
    fmt = resolve_format(source, options.format)
    if fmt == "raster":
        if source.is_file() and source.suffix.lower() not in RASTER_SUFFIXES:
            raise ConfigError(f"labels format 'raster' needs GeoTIFFs, got {source.name}; set labels.format")
        return read_raster_layers(source, grid, table, dates=dict(options.dates), codes=options.codes,
                                  static=options.static), fmt
    if source.is_dir():
        raise ConfigError(f"labels format 'vector' needs a vector file, got the folder {source}")
    date_field = None if options.static else options.date_field
    return read_vector_layers(source, grid, table, class_field=options.class_field, date_field=date_field,
                              codes=options.codes), fmt


def _drop_classes(layers: LabelLayers, table: ClassTable, names: Sequence[str]) -> LabelLayers:
    """``layers`` with the classes named ``names`` set to unlabelled (logged when present)."""
    ids = [i for i, n in zip(table.ids(), table.names(), strict=True) if n in set(names)]
    if not ids:
        return layers

    def drop(layer: np.ndarray) -> np.ndarray:
        return np.where(np.isin(layer, ids), 0, layer).astype(layer.dtype)

    log.warning("classes %s are not land cover of a period map: their labels are ignored (predict.target: "
                "last_date keeps them, as in the paper)", list(names))
    return LabelLayers(dated=[(d, drop(v)) for d, v in layers.dated],
                       static=None if layers.static is None else drop(layers.static))


def _scarce(labels: np.ndarray, layers: LabelLayers, options: LabelOptions,
            static_steps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Label scarcity of the stacked ``labels``: static labels are thinned once (the same pixels
    at every step), dated ones per date. Returns the training labels and the kept time indices."""
    kwargs = {"pixel_fraction": options.pixel_fraction, "points_per_class": options.points_per_class,
              "seed": options.seed}
    if layers.static is None or layers.dated:
        return apply_scarcity(labels, date_fraction=options.date_fraction, date_removal=options.date_removal,
                              **kwargs)
    thinned, _ = apply_scarcity(layers.static[None], **kwargs)
    out = np.zeros_like(labels)
    steps = np.ones(len(labels), bool) if static_steps is None else static_steps
    out[steps] = thinned[0]
    return out, np.flatnonzero(steps & out.reshape(len(out), -1).any(axis=1))


def build_labels(cube: xr.Dataset, table: ClassTable, options: LabelOptions, *,
                 static_steps: np.ndarray | None = None, drop_classes: Sequence[str] = ()) -> xr.Dataset:
    """The ``labels.zarr`` dataset of ``cube`` (a pipeline cube store, opened lazily).

    ``static_steps``: (time,) bool, the steps static labels apply to (the map's period; default
    every step); ``drop_classes``: class names whose labels are ignored (cloud and shadow in a
    period map).

    Returns a Dataset with ``labels`` dims (time, y, x) uint8 (0 = unlabelled; label scarcity
    applied: what training may use) and ``reference`` (same dims, every label of the source: what
    evaluation scores against) on the cube's ``time``/``y``/``x`` coordinates, attrs
    ``crs``/``transform`` copied from the cube plus ``classes`` (the class table),
    ``label_source``, ``label_format``, ``unmatched_label_dates``, ``labelled_dates`` (kept cube
    dates holding labels, ISO days), ``n_labelled_dates_before_scarcity`` and ``options``.
    """
    grid = grid_from_store(cube)
    source = Path(options.source)
    layers, fmt = _read_layers(source, grid, table, options)
    layers = _drop_classes(layers, table, drop_classes)
    ends = (cube.attrs.get("time_grid") or {}).get("step_ends")  # a regular grid (pipeline.timegrid)
    labels, unmatched = stack_on_cube_dates(layers, grid, tolerance_days=options.date_tolerance_days,
                                            static_steps=static_steps,
                                            step_ends=None if ends is None else np.array(ends, "datetime64[D]"))
    n_before = int(np.count_nonzero(labels.reshape(labels.shape[0], -1).any(axis=1)))
    reference = labels
    labels, kept = _scarce(labels, layers, options, static_steps)
    counts = np.bincount(labels.reshape(-1), minlength=256)
    log.info(
        "labels: %d dates kept of %d labelled; pixels per class %s",
        kept.size, n_before, {n: int(counts[i]) for i, n in zip(table.ids(), table.names())},
    )
    cube_days = grid.times.astype("datetime64[D]")
    attrs = {
        "crs": cube.attrs["crs"],
        "transform": [float(v) for v in list(cube.attrs["transform"])[:6]],
        "classes": table.to_config(),
        "label_source": str(source),
        "label_format": fmt,
        "unmatched_label_dates": unmatched,
        "labelled_dates": [str(cube_days[i]) for i in kept],
        "n_labelled_dates_before_scarcity": n_before,
        "options": options.to_dict(),
    }
    if cube.attrs.get("time_grid"):  # the series' regular grid (pipeline.timegrid): which period a map shows
        attrs["time_grid"] = cube.attrs["time_grid"]
    coords = {"time": cube["time"].values, "y": cube["y"].values, "x": cube["x"].values}
    flags = {"nodata": 0, "flag_meaning": "0 = unlabelled"}
    da = xr.DataArray(labels, dims=("time", "y", "x"), coords=coords, name="labels",
                      attrs={"long_name": "training class id (label scarcity applied)", **flags})
    ref = xr.DataArray(reference, dims=("time", "y", "x"), coords=coords, name="reference",
                       attrs={"long_name": "reference class id (every label of the source)", **flags})
    return xr.Dataset({"labels": da, "reference": ref}, attrs=attrs)
