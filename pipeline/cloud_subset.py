"""Stage ``cloud_subset``: a features store restricted to the dates below a cloud-cover threshold.

``python -m pipeline.cloud_subset --features results/demo/features.zarr --items results/demo/items.json
--out results/demo/experiments/cloud_cover/10/features.zarr --options '{"max_cloud_cover": 10}'``

The cloud-cover experiment of the paper (section 5.3, Fig. 11, Table 2) trains and tests the
model on sub-series that contain only the scenes below a cloud-cover threshold (< 1, 10, 25,
50 %, all). The subset is written as a features store of the same layout as ``features.zarr``
(see :mod:`pipeline.raster.zarr_io`), so the unchanged train, predict and evaluate stages run on
it: the design keeps every experiment out of the stages' options. Labels need no subset: the
train stage aligns ``labels.zarr`` on the feature dates.

Dates kept: cloud cover strictly below ``max_cloud_cover`` (100 keeps every date); the last
date, the map and test date, is always kept (the evaluation compares the map of that date with
its reference). Cloud cover of a date:

- ``source: scene``: the mean ``eo:cloud_cover`` (percent) of the frozen STAC items merged into
  that date (the ``item_ids`` coordinate lists them, comma-separated);
- ``source: aoi``: the percentage of AOI pixels without a clear observation (``valid`` False:
  cloud, shadow, cirrus and fill), the paper's per-study-area ratio.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from pipeline.cli import base_parser, run_stage
from pipeline.config import parse_options, reject_unknown
from pipeline.errors import ConfigError, FeatureError, StacError
from pipeline.raster.zarr_io import open_store, write_zarr_atomic

log = logging.getLogger(__name__)

CloudSource = Literal["scene", "aoi"]


@dataclass(frozen=True)
class SubsetOptions:
    """Options of the subset (``--options`` JSON).

    max_cloud_cover: keep dates with cloud cover < this (percent, 0-100; 100 = every date).
    source: ``scene`` (mean ``eo:cloud_cover`` of the date's items) or ``aoi`` (percent of AOI
    pixels without a clear observation). min_dates: fewest dates the subset may keep (the
    model needs ``time_steps + 1``: ``t`` for the map window and at least one training window).
    """

    max_cloud_cover: float = 100.0
    source: CloudSource = "scene"
    min_dates: int = 2

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SubsetOptions:
        """Build from a mapping; unknown keys or bad values raise ConfigError."""
        reject_unknown(options, set(cls.__dataclass_fields__), section="cloud_subset")
        opts = cls(**options)
        value = opts.max_cloud_cover
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 100:
            raise ConfigError(f"cloud_subset.max_cloud_cover {value!r} must be a percentage in (0, 100]")
        if opts.source not in ("scene", "aoi"):
            raise ConfigError(f"cloud_subset.source {opts.source!r} not allowed (allowed values: scene, aoi)")
        if isinstance(opts.min_dates, bool) or not isinstance(opts.min_dates, int) or opts.min_dates < 1:
            raise ConfigError(f"cloud_subset.min_dates {opts.min_dates!r} must be an integer >= 1")
        return opts


def read_item_cloud_cover(path: str | Path) -> dict[str, float | None]:
    """``{item id: eo:cloud_cover}`` (percent, None when absent) of a frozen ItemCollection."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StacError(f"cannot read the frozen items {path} ({exc}); rerun the search stage") from exc
    features = data.get("features") if isinstance(data, dict) else None
    if not isinstance(features, list):
        raise StacError(f"{path} is not a STAC ItemCollection (no 'features' list); rerun the search stage")
    out: dict[str, float | None] = {}
    for item in features:
        value = item.get("properties", {}).get("eo:cloud_cover")
        out[str(item.get("id"))] = None if value is None else float(value)
    return out


def scene_cloud_cover(item_ids: Sequence[str], cover: Mapping[str, float | None]) -> np.ndarray:
    """Cloud cover (time,) float64 percent of every date: the mean ``eo:cloud_cover`` of the
    items merged into it. ``item_ids``: per date, item ids joined by commas."""
    out = np.empty(len(item_ids), dtype=np.float64)
    for i, joined in enumerate(item_ids):
        ids = [s for s in str(joined).split(",") if s]
        if not ids:
            raise FeatureError(f"date {i} of the features store lists no STAC item; rebuild the cube, "
                               f"or use experiments.max_cloud_cover.source: aoi")
        values = []
        for item_id in ids:
            if item_id not in cover:
                raise StacError(f"item {item_id} of the features store is not in the frozen items; the cube was "
                                f"built from other items - rerun build_cube, or use experiments.max_cloud_cover.source: aoi")
            if cover[item_id] is None:
                raise StacError(f"item {item_id} has no eo:cloud_cover; use experiments.max_cloud_cover.source: aoi")
            values.append(cover[item_id])
        out[i] = float(np.mean(values))
    return out


def aoi_cloud_cover(valid: np.ndarray) -> np.ndarray:
    """Percent (time,) float64 of pixels without a clear observation; ``valid`` (time, y, x) bool."""
    v = np.asarray(valid, dtype=bool)
    if v.ndim != 3 or v.shape[1] * v.shape[2] == 0:
        raise FeatureError(f"valid mask of shape {v.shape} is not (time, y, x); rebuild features.zarr")
    return 100.0 * (1.0 - v.reshape(v.shape[0], -1).mean(axis=1))


def keep_dates(cover: np.ndarray, *, max_cloud_cover: float) -> np.ndarray:
    """Boolean (time,) mask: cloud cover < ``max_cloud_cover`` (every date for 100); the last
    date is always kept."""
    c = np.asarray(cover, dtype=np.float64)
    keep = np.ones(c.shape, dtype=bool) if max_cloud_cover >= 100 else c < max_cloud_cover
    if keep.size:
        keep[-1] = True
    return keep


def subset_features(features: xr.Dataset, options: SubsetOptions, *,
                    item_cover: Mapping[str, float | None] | None = None) -> xr.Dataset:
    """The features store (layout of :mod:`pipeline.raster.zarr_io`) restricted to the kept dates.

    ``item_cover`` (``{item id: eo:cloud_cover}``) is required for ``source: scene``. The result
    carries the attrs of ``features`` plus ``cloud_subset`` (options, dates, per-date cloud
    cover in percent, kept flags). Raises FeatureError when fewer than ``min_dates`` remain, and
    ConfigError for features on a regular time grid (their steps are composites, not scenes).
    """
    if features.attrs.get("time_grid"):
        raise ConfigError(
            f"the cloud_cover experiment keeps the acquisitions below a cloud cover, but these features are on a "
            f"regular time grid (cube.period: {features.attrs['time_grid'].get('period')!r}) whose steps composite "
            f"several acquisitions; set cube.period: null (the paper's per-date protocol) to run it")
    if options.source == "scene":
        if item_cover is None:
            raise ConfigError("cloud_subset source 'scene' needs the frozen items (--items)")
        if "item_ids" not in features.coords:
            raise FeatureError("features store has no 'item_ids' coordinate; rebuild the cube and the features, "
                               "or use experiments.max_cloud_cover.source: aoi")
        cover = scene_cloud_cover([str(s) for s in features["item_ids"].values.tolist()], item_cover)
    else:
        cover = aoi_cloud_cover(features["valid"].values)
    keep = keep_dates(cover, max_cloud_cover=options.max_cloud_cover)
    n = int(keep.sum())
    if n < options.min_dates:
        raise FeatureError(
            f"cloud cover < {options.max_cloud_cover:g} % ({options.source}) keeps {n} of {keep.size} dates, the model "
            f"needs {options.min_dates} (train.time_steps + 1); raise the threshold in experiments.max_cloud_cover.values or "
            f"lower train.time_steps")
    out = features.isel(time=np.flatnonzero(keep))
    for name in list(out.variables):
        out[name].encoding = {}
    chunks = {"time": 1} if "features" in out else {}
    out = out.chunk(chunks) if chunks else out
    dates = [str(t)[:10] for t in features.time.values]
    out.attrs = {**features.attrs, "cloud_subset": {
        **asdict(options), "dates": dates, "cloud_cover": [round(float(c), 4) for c in cover],
        "kept": keep.tolist(), "n_kept": n}}
    log.info("cloud cover < %g %% (%s): %d of %d dates kept (last date %s always kept)", options.max_cloud_cover,
             options.source, n, keep.size, dates[-1] if dates else "-")
    return out


def run_subset(features_path: Path, items_path: Path | None, out: Path, options: SubsetOptions) -> Path:
    """Read the features store (and the frozen items), write the subset store atomically."""
    features = open_store(features_path, required=("features", "valid"))
    cover = read_item_cloud_cover(items_path) if options.source == "scene" and items_path is not None else None
    return write_zarr_atomic(subset_features(features, options, item_cover=cover), out)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, type=Path, help="features.zarr to subset")
    parser.add_argument("--items", type=Path, default=None, help="frozen items.json (source 'scene')")
    parser.add_argument("--out", required=True, type=Path, help="subset features.zarr to write")
    parser.add_argument("--options", default="{}", help="subset options as one JSON object")
    args = parser.parse_args(argv)

    def work() -> None:
        options = SubsetOptions.from_options(parse_options(args.options, what="cloud_subset"))
        run_subset(args.features, args.items, args.out, options)

    return run_stage(work, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
