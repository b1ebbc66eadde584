"""The WorldCereal Belgium 2018 patch as a user would bring it to the pipeline.

``../shared/data/worldcereal-be-2018`` holds a real 64 x 64 px patch at 10 m (EPSG:32631,
bounds 501360, 5629040 - 502000, 5629680) as netCDF: Landsat 8 Collection 1 surface reflectance
(26 acquisitions, B02-B07 + ``pixel_qa``), Sentinel-2 L2A (118 acquisitions, 10 m B02/B03/B04/B08,
20 m B05/B06/B07/B8A/B11/B12 + ``SCL``) and the 2018 Flemish parcel registry as a dense reference
(``CT`` crop-type code). This module turns them into what a user has before running the
workflow, with nothing from the pipeline but its ``python -m pipeline.index`` command:

- per-acquisition Cloud Optimized GeoTIFFs (uint16 DN as in the source, scale 1e-4 in the GeoTIFF,
  nodata 0): Landsat 8 as one 6-band file per acquisition (B02..B07, the multi-band asset
  ``image``) plus its ``pixel_qa`` file (the pipeline takes the quality band from an asset of its
  own, not from a band of a multi-band asset), Sentinel-2 as one file per band (SCL included), the
  20 m bands kept at 20 m so that the cube stage resamples them onto the 10 m grid;
- a local STAC catalog per sensor, indexed by ``python -m pipeline.index`` (relative hrefs);
- the reference as ONE crop-code GeoTIFF (uint16, the source's codes, 0 = not in the registry),
  undated (``labels.static: true``: the 2018 registry labels every step of the map's period),
  mapped to the class table by ``labels.value_map`` / ``labels.ignore_values``;
- the AOI as a GeoPackage in EPSG:32631 holding the patch's exact bounds (a lon/lat ``bbox``
  cannot express a 10 m grid exactly) and a config YAML per sensor that sets only data-specific
  keys: everything else is the project's defaults (the schema's). The map is the land cover of
  2018 (``predict.period``: the registry's year, within the data's span 2017-08-01 - 2018-11-30);
  Landsat 8 keeps the default time grid (16-day composites, its revisit), Sentinel-2 gets 10-day
  steps (two satellites, 5-day revisit, but about half the acquisitions are cloudy).

Grid conventions, checked by :func:`grid_transform`: the netCDF ``x``/``y`` coordinates are pixel
centres (first x = 501365 = west edge 501360 + 5 m), ``y`` decreases (north-up rows), so the
GeoTIFF transform is ``from_origin(x[0] - dx/2, y[0] + dy/2, dx, dy)``. Pixel edges lie on
multiples of 10 m, hence ``cube.anchor: edge`` in the configs (the default ``center`` is the
Landsat 30 m grid and would shift every pixel by half a pixel).

Usage (from the repository root)::

    python bench/worldcereal.py /tmp/wc        # writes /tmp/wc/{landsat8,sentinel2}/..., configs

and from Python (tests put ``bench/`` on ``sys.path``)::

    import worldcereal
    paths = worldcereal.convert(dest, sensors=("landsat8",))
    paths.configs["landsat8"]  # -> dest/landsat8.yaml, for snakemake --configfile

Never copy the netCDFs into the repository: they are read from ``../shared``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
import yaml
from affine import Affine

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "worldcereal-be-2018"
STEM = "00002806639B424A_32631_2017-08-01_2018-11-30"
EPSG = 32631
BOUNDS = (501360.0, 5629040.0, 502000.0, 5629680.0)
SCALE = 1e-4          # DN -> reflectance of every optical band of both products
NODATA = 0            # the netCDFs' _FillValue of every variable

# Landsat 8 Collection 1 SR: netCDF variable -> (band description, cube band name)
L8_BANDS = {"B02": "blue", "B03": "green", "B04": "red", "B05": "nir08", "B06": "swir16", "B07": "swir22"}
# Sentinel-2 L2A: netCDF variable -> cube band name, by resolution
S2_BANDS_10M = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}
S2_BANDS_20M = {"B05": "rededge1", "B06": "rededge2", "B07": "rededge3", "B8A": "nir08",
                "B11": "swir16", "B12": "swir22"}

# Crop-type codes of the 2018 Flemish registry in the patch (pixel counts of the 4096):
# 0 none 1860 (land cover 99: 1753, 60: 107), 1200 maize 1249, 9120 permanent grassland 835,
# 7900 other legumes 96, 2130 cabbages 31, 5100 potatoes 25. Legumes, cabbages and potatoes are
# one parcel each (cabbages and potatoes on the patch edge): alone they could never be both
# trained on and tested in a spatial design, so they form one class "other crops" (152 px).
CLASSES = [
    {"id": 1, "name": "maize", "color": "#f2c12e"},
    {"id": 2, "name": "permanent grassland", "color": "#4daf4a"},
    {"id": 3, "name": "other crops", "color": "#a65628"},
]
VALUE_MAP = {1200: 1, 9120: 2, 7900: 3, 2130: 3, 5100: 3}
CROP_CODES = {0: "none", 1200: "maize", 9120: "permanent grassland", 7900: "other legumes",
              2130: "cabbages", 5100: "potatoes"}

PERIOD = ("2017-08-01", "2018-11-30")   # the data's span (AOI dates)
MAP_PERIOD = {"start": "2018-01-01", "end": "2018-11-30"}   # the registry's year, as far as the data go
TIME_GRID = {"landsat8": None, "sentinel2": "10D"}          # cube.period (None: the default, 16 days)
SENSORS = ("landsat8", "sentinel2")


@dataclass
class Converted:
    """What :func:`convert` wrote, under ``dest``."""

    dest: Path
    images: dict[str, Path] = field(default_factory=dict)     # sensor -> folder of COGs
    catalogs: dict[str, Path] = field(default_factory=dict)   # sensor -> STAC catalog folder
    configs: dict[str, Path] = field(default_factory=dict)    # sensor -> config YAML
    reference: Path | None = None                             # the crop-code GeoTIFF (undated, static)
    aoi: Path | None = None                                   # AOI GeoPackage (EPSG:32631)


def open_netcdf(kind: str, data: Path = DATA) -> xr.Dataset:
    """One of the patch's netCDFs (``L8_SR_10m``, ``S2_L2A_10m``, ``S2_L2A_20m``, ``OUTPUT_POLY-110_10m``)
    with raw values: no scale applied, no fill masked (DN as stored, dtype as stored)."""
    import importlib.util

    path = data / f"{kind}_{STEM}.nc"
    if importlib.util.find_spec("h5py") is None:  # h5netcdf >= 1.8 no longer requires h5py itself
        raise ImportError('reading the netCDF4 files needs h5netcdf with h5py: pip install "h5netcdf[h5py]"')
    return xr.open_dataset(path, engine="h5netcdf", mask_and_scale=False, decode_coords=False)


def grid_transform(ds: xr.Dataset) -> Affine:
    """The GeoTIFF transform of ``ds`` from its ``x``/``y`` pixel-centre coordinates.

    Checks that the spacing is regular, ``x`` increases and ``y`` decreases (north-up), the
    coordinates are pixel centres (the edges match the ``bounds`` attribute) and the CRS is
    EPSG:32631; raises ``ValueError`` otherwise.
    """
    x, y = ds["x"].values, ds["y"].values
    dx, dy = np.diff(x), np.diff(y)
    if not (np.allclose(dx, dx[0]) and np.allclose(dy, dy[0]) and dx[0] > 0 and dy[0] < 0):
        raise ValueError("x must increase and y decrease with a regular spacing")
    res = float(dx[0])
    if not np.isclose(-dy[0], res):
        raise ValueError(f"pixels are not square: dx {dx[0]}, dy {dy[0]}")
    west, north = float(x[0]) - res / 2, float(y[0]) + res / 2
    east, south = float(x[-1]) + res / 2, float(y[-1]) - res / 2
    bounds = _bounds(ds.attrs["bounds"])
    if not np.allclose((west, south, east, north), bounds):
        raise ValueError(f"centre-based edges {(west, south, east, north)} differ from the bounds {bounds}")
    if int(ds.attrs["epsg"]) != EPSG:
        raise ValueError(f"expected EPSG:{EPSG}, the file says {ds.attrs['epsg']}")
    return Affine(res, 0.0, west, 0.0, -res, north)


def _bounds(attr: object) -> tuple[float, ...]:
    """The ``bounds`` attribute, a string ``"(w, s, e, n)"`` or an array, as four floats."""
    if isinstance(attr, str):
        return tuple(float(v) for v in attr.strip("()[] ").replace(",", " ").split())
    return tuple(float(v) for v in np.asarray(attr).ravel())


def stamp(t: np.datetime64) -> str:
    """``2018-06-06T104459`` for an acquisition time (file names; two Landsat scenes share a day)."""
    text = str(np.datetime_as_string(t, unit="s"))
    return text.replace(":", "")


def write_cog(path: Path, data: np.ndarray, transform: Affine, *, descriptions: Sequence[str],
              scales: Sequence[float], nodata: float | None = NODATA) -> Path:
    """Write ``data`` (band, y, x) as a COG in EPSG:32631 with band descriptions, per-band scales
    (GDAL metadata: reflectance = DN * scale) and ``nodata``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "COG", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": data.dtype.name, "crs": f"EPSG:{EPSG}", "transform": transform, "nodata": nodata,
               "compress": "deflate", "blocksize": 256, "overview_resampling": "nearest"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = tuple(descriptions)
        dst.scales = tuple(scales)
        dst.offsets = (0.0,) * data.shape[0]
    return path


def convert_landsat(dest: Path, data: Path = DATA) -> list[Path]:
    """Landsat 8: per acquisition a 6-band COG ``LC08_<time>_image.tif`` (B02..B07) and a
    single-band ``LC08_<time>_pixel_qa.tif``."""
    ds = open_netcdf("L8_SR_10m", data)
    transform = grid_transform(ds)
    out = []
    for i, t in enumerate(ds["timestamp"].values):
        stack = np.stack([ds[v].values[i] for v in L8_BANDS]).astype(np.uint16)
        out.append(write_cog(dest / f"LC08_{stamp(t)}_image.tif", stack, transform, descriptions=list(L8_BANDS),
                             scales=[SCALE] * len(L8_BANDS)))
        qa = ds["pixel_qa"].values[i][None].astype(np.uint16)
        out.append(write_cog(dest / f"LC08_{stamp(t)}_pixel_qa.tif", qa, transform, descriptions=["pixel_qa"],
                             scales=[1.0]))
    return out


def convert_sentinel2(dest: Path, data: Path = DATA) -> list[Path]:
    """Sentinel-2 L2A: one single-band COG per band and acquisition, ``S2_<time>_<band>.tif``;
    10 m bands at 10 m, 20 m bands and SCL at 20 m (uint8 SCL)."""
    out = []
    for kind, bands in (("S2_L2A_10m", list(S2_BANDS_10M)), ("S2_L2A_20m", [*S2_BANDS_20M, "SCL"])):
        ds = open_netcdf(kind, data)
        transform = grid_transform(ds)
        for i, t in enumerate(ds["timestamp"].values):
            for band in bands:
                dtype = np.uint8 if band == "SCL" else np.uint16
                layer = ds[band].values[i][None].astype(dtype)
                out.append(write_cog(dest / f"S2_{stamp(t)}_{band}.tif", layer, transform, descriptions=[band],
                                     scales=[1.0 if band == "SCL" else SCALE]))
    return out


def write_reference(path: Path, data: Path = DATA) -> Path:
    """The 2018 crop-type reference as a uint16 GeoTIFF of the source's codes (0 = none, no nodata
    declared: 0 is a code the label options ignore)."""
    ds = open_netcdf("OUTPUT_POLY-110_10m", data)
    codes = ds["CT"].values.astype(np.uint16)
    return write_cog(path, codes[None], grid_transform(ds), descriptions=["crop type code"], scales=[1.0],
                     nodata=None)


def reference_counts(data: Path = DATA) -> dict[int, int]:
    """Pixels per crop-type code of the reference."""
    codes = open_netcdf("OUTPUT_POLY-110_10m", data)["CT"].values
    values, counts = np.unique(codes, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def class_counts(data: Path = DATA) -> dict[str, int]:
    """Pixels per class of :data:`CLASSES` under :data:`VALUE_MAP`."""
    by_code = reference_counts(data)
    out = {c["name"]: 0 for c in CLASSES}
    names = {c["id"]: c["name"] for c in CLASSES}
    for code, n in by_code.items():
        if code in VALUE_MAP:
            out[names[VALUE_MAP[code]]] += n
    return out


def write_aoi(path: Path) -> Path:
    """The patch's bounds as a polygon GeoPackage in EPSG:32631."""
    import geopandas as gpd
    from shapely.geometry import box

    path.parent.mkdir(parents=True, exist_ok=True)
    gpd.GeoDataFrame({"name": ["worldcereal-be-2018"]}, geometry=[box(*BOUNDS)], crs=f"EPSG:{EPSG}").to_file(
        path, driver="GPKG")
    return path


def index_catalog(images: Path, catalog: Path, sensor: str, *, python: str = sys.executable) -> Path:
    """Index a folder of COGs into a local STAC catalog with ``python -m pipeline.index``."""
    if sensor == "landsat8":
        args = ["--pattern", r"LC08_(?P<date>[0-9T-]+)_(?P<asset>image|pixel_qa)\.tif",
                "--band-names", ",".join(L8_BANDS), "--platform", "landsat-8"]
    else:
        args = ["--pattern", r"S2_(?P<date>[0-9T-]+)_(?P<asset>B[0-9A]+|SCL)\.tif", "--platform", "sentinel-2"]
    cmd = [python, "-m", "pipeline.index", str(images), "--out", str(catalog), "--date-format", "%Y-%m-%dT%H%M%S",
           "--collection", f"worldcereal-be-2018-{sensor}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return catalog


def sensor_section(sensor: str) -> dict:
    """The ``sensor`` config section: bands (Landsat: bands of the multi-band asset) and QA decoding."""
    if sensor == "landsat8":
        bands = {name: {"asset": "image", "band": i + 1} for i, name in enumerate(L8_BANDS.values())}
        # Collection 1 SR pixel_qa: 0 fill, 1 clear, 2 water, 3 cloud shadow, 4 snow, 5 cloud;
        # 0 is the file's fill value (pixels outside the scene)
        qa = {"asset": "pixel_qa", "decode": "bits", "invalid_bits": [0, 3, 4, 5], "nodata": 0}
        return {"bands": bands, "qa": qa}
    bands = {name: key for key, name in {**S2_BANDS_10M, **S2_BANDS_20M}.items()}
    # SCL classes: 0 no data, 1 saturated/defective, 3 cloud shadow, 8/9 cloud, 10 cirrus, 11 snow
    qa = {"asset": "SCL", "decode": "values", "invalid_values": [0, 1, 3, 8, 9, 10, 11], "nodata": 0}
    return {"bands": bands, "qa": qa}


def sensor_config(sensor: str, conv: Converted) -> dict:
    """A config with only the data-specific keys; paths relative to ``conv.dest`` (the workdir)."""
    rel = lambda p: os.path.relpath(p, conv.dest)
    cube: dict = {"resolution": 10, "anchor": "edge"}
    if TIME_GRID[sensor]:
        cube["period"] = TIME_GRID[sensor]
    return {
        "aois": {"wcbe": {"geometry": rel(conv.aoi), "start": PERIOD[0], "end": PERIOD[1], "crs": f"EPSG:{EPSG}"}},
        "catalog": {"url": rel(conv.catalogs[sensor]), "collection": f"worldcereal-be-2018-{sensor}",
                    "platforms": ["landsat-8"] if sensor == "landsat8" else ["sentinel-2"],
                    "max_cloud_cover": 100},
        "sensor": sensor_section(sensor),
        "cube": cube,
        "labels": {"source": rel(conv.reference), "static": True, "ignore_values": [0],
                   "value_map": {int(k): v for k, v in VALUE_MAP.items()}},
        "predict": {"period": dict(MAP_PERIOD)},
        "classes": CLASSES,
    }


def layout(dest: str | os.PathLike[str], sensors: Sequence[str] = SENSORS) -> Converted:
    """Where :func:`convert` writes under ``dest`` (the paths, whether or not they exist yet): the
    paths of a conversion made earlier, e.g. by ``python bench/worldcereal.py DEST``."""
    conv = Converted(dest=Path(dest).resolve())
    conv.aoi = conv.dest / "aoi.gpkg"
    conv.reference = conv.dest / "reference" / "crop_type_2018.tif"
    for sensor in sensors:
        if sensor not in SENSORS:
            raise ValueError(f"unknown sensor {sensor!r}; choose from {SENSORS}")
        conv.images[sensor] = conv.dest / sensor / "images"
        conv.catalogs[sensor] = conv.dest / sensor / "catalog"
        conv.configs[sensor] = conv.dest / f"{sensor}.yaml"
    return conv


def convert(dest: str | os.PathLike[str], *, sensors: Sequence[str] = SENSORS, data: Path = DATA,
            index: bool = True) -> Converted:
    """Write COGs, catalogs (``index``: through ``python -m pipeline.index``), labels, AOI and one
    config per sensor under ``dest`` (:func:`layout`); returns their paths."""
    conv = layout(dest, sensors)
    conv.dest.mkdir(parents=True, exist_ok=True)
    write_aoi(conv.aoi)
    write_reference(conv.reference, data)
    for sensor in sensors:
        (convert_landsat if sensor == "landsat8" else convert_sentinel2)(conv.images[sensor], data)
        if index:
            index_catalog(conv.images[sensor], conv.catalogs[sensor], sensor)
        conv.configs[sensor].write_text(yaml.safe_dump(sensor_config(sensor, conv), sort_keys=False))
    return conv


def main(argv: list[str] | None = None) -> int:
    """``python bench/worldcereal.py DEST [--sensors ...] [--no-index] [--data DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", help="folder to write (the snakemake --directory of the runs)")
    parser.add_argument("--sensors", nargs="+", default=list(SENSORS), choices=SENSORS)
    parser.add_argument("--no-index", action="store_true", help="write COGs, labels and configs only")
    parser.add_argument("--data", type=Path, default=DATA, help=f"the patch's netCDFs (default {DATA})")
    args = parser.parse_args(argv)
    conv = convert(args.dest, sensors=args.sensors, index=not args.no_index, data=args.data)
    for sensor, cfg in conv.configs.items():
        print(f"{sensor}: snakemake --cores 2 maps --directory {conv.dest} --configfile {cfg}")
    print("classes:", class_counts(args.data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
