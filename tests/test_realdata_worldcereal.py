"""Real data end to end: the WorldCereal Belgium 2018 patch (``../shared/data/worldcereal-be-2018``,
64 x 64 px at 10 m, EPSG:32631) converted as a user would (``bench/worldcereal.py``: COGs per
acquisition, ``python -m pipeline.index``, crop-code label rasters, one config per sensor with the
data-specific keys only), then ``snakemake maps`` on Landsat 8 with the default time grid (16-day
composites), the default spatial test design and a small training budget: the map of 2018 lies on
the patch's grid, and the report scores the test blocks of ``labels.zarr`` only."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import yaml
from affine import Affine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import worldcereal
from conftest import (
    PREFETCH,
    SHARED,
    Prefetch,
    prefetch_entry,
    prefetched,
    snakemake_cmd,
)

GRID = Affine(10.0, 0.0, 501360.0, 0.0, -10.0, 5629680.0)
AOI = "wcbe"
MAP_STEP = "2018-11-24"  # the last 16-day step from the AOI start (2017-08-01) inside the period 2018
# a training budget for 2 CPU cores; everything else is the project's defaults (the schema's)
SMALL_TRAIN = {"time_steps": 6, "patch": 32, "stride": 16, "epochs": 2, "max_windows_per_epoch": 6,
               "convlstm": {"hidden": 8, "rampup_epochs": 1}}
DATA = SHARED / "data" / "worldcereal-be-2018"


# The conversions and workflow runs below start in the background when the session starts
# (tests/conftest.py ``Prefetch``): the fixtures wait for them.
def convert_cmd(dest: Path, sensor: str) -> list[str]:
    """``python bench/worldcereal.py``: :func:`worldcereal.convert` of one sensor's data into ``dest``."""
    return [sys.executable, str(REPO / "bench" / "worldcereal.py"), str(dest), "--sensors", sensor, "--data", str(DATA)]


def _landsat_conversion(factory: pytest.TempPathFactory) -> Prefetch | None:
    if not DATA.is_dir():
        return None
    dest = factory.mktemp("worldcereal")
    return Prefetch("converted", dest, [convert_cmd(dest, "landsat8")])


def _landsat_maps(factory: pytest.TempPathFactory) -> Prefetch | None:
    """`maps` on the Landsat 8 conversion (its folder), with :data:`SMALL_TRAIN`."""
    conversion = prefetch_entry("converted", factory)
    if conversion is None:
        return None
    workdir = conversion.workdir
    budget = {"train": SMALL_TRAIN,
              # the default stem (ImageNet ResNet-18 conv1) from the local file instead of the download
              "features": {"stem_weights": str(SHARED / "weights" / "resnet18_imagenet_conv1.npz")}}
    (workdir / "budget.yaml").write_text(yaml.safe_dump(budget))
    configs = (str(worldcereal.layout(workdir, ("landsat8",)).configs["landsat8"]), str(workdir / "budget.yaml"))
    return Prefetch("landsat_run", workdir, [snakemake_cmd(workdir, "maps", "--configfile", *configs)],
                    after=conversion)


def _sentinel2_cube(factory: pytest.TempPathFactory) -> Prefetch | None:
    """The Sentinel-2 conversion and its cube (`snakemake results/wcbe/cube.zarr`) in a folder of their own."""
    if not DATA.is_dir():
        return None
    dest = factory.mktemp("sentinel2")
    config = worldcereal.layout(dest, ("sentinel2",)).configs["sentinel2"]
    return Prefetch("sentinel2_cube", dest, [convert_cmd(dest, "sentinel2"),
                                             snakemake_cmd(dest, f"results/{AOI}/cube.zarr", "--configfile", str(config))])


PREFETCH.update(converted=_landsat_conversion, landsat_run=_landsat_maps, sentinel2_cube=_sentinel2_cube)


@pytest.fixture(scope="module")
def data_dir(shared_dir: Path) -> Path:
    data = shared_dir / "data" / "worldcereal-be-2018"
    if not data.is_dir():
        pytest.skip(f"{data} is absent")
    assert data == DATA
    return data


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> worldcereal.Converted:
    """The Landsat 8 data as a user converts them (`python bench/worldcereal.py DEST --sensors landsat8`)."""
    dest, proc = prefetched("converted", tmp_path_factory)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return worldcereal.layout(dest, ("landsat8",))


@pytest.fixture(scope="module")
def landsat_run(tmp_path_factory: pytest.TempPathFactory, converted: worldcereal.Converted) -> Path:
    workdir, proc = prefetched("landsat_run", tmp_path_factory)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert workdir == converted.dest
    return workdir / "results" / AOI


@pytest.fixture(scope="module")
def sentinel2_cube(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> worldcereal.Converted:
    """The Sentinel-2 conversion, with `results/wcbe/cube.zarr` built from it."""
    dest, proc = prefetched("sentinel2_cube", tmp_path_factory)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return worldcereal.layout(dest, ("sentinel2",))


def test_conversion_keeps_grid_values_and_codes(converted: worldcereal.Converted, data_dir: Path) -> None:
    ds = worldcereal.open_netcdf("L8_SR_10m", data_dir)
    i = 20  # 2018-09-03
    stamp = worldcereal.stamp(ds["timestamp"].values[i])
    with rasterio.open(converted.images["landsat8"] / f"LC08_{stamp}_image.tif") as src:
        assert src.transform == GRID and src.crs.to_epsg() == 32631 and src.count == 6
        assert src.nodata == 0 and src.dtypes[0] == "uint16" and src.scales[0] == pytest.approx(1e-4)
        # the netCDF's pixel-centre coordinates land in the same pixel: centre (x[5], y[7]) is row 7, col 5
        x, y = float(ds["x"][5]), float(ds["y"][7])
        sampled = next(src.sample([(x, y)]))
        assert list(sampled) == [int(ds[b].values[i, 7, 5]) for b in worldcereal.L8_BANDS]
    with rasterio.open(converted.images["landsat8"] / f"LC08_{stamp}_pixel_qa.tif") as src:
        np.testing.assert_array_equal(src.read(1), ds["pixel_qa"].values[i])

    items = sorted((converted.catalogs["landsat8"] / "items").glob("*.json"))
    assert len(items) == 26  # one item per acquisition: the two same-day pairs stay two items each
    item = json.loads(items[0].read_text())
    assert item["properties"]["platform"] == "landsat-8" and item["properties"]["proj:epsg"] == 32631
    assert all(not a["href"].startswith(("/", "file:")) for a in item["assets"].values())
    assert [b["scale"] for b in item["assets"]["image"]["raster:bands"]] == [1e-4] * 6
    assert "scale" not in item["assets"]["pixel_qa"]["raster:bands"][0]

    with rasterio.open(converted.reference) as src:
        assert src.transform == GRID and src.dtypes[0] == "uint16"
        codes, counts = np.unique(src.read(1), return_counts=True)
    assert dict(zip(codes.tolist(), counts.tolist())) == {0: 1860, 1200: 1249, 2130: 31, 5100: 25, 7900: 96,
                                                          9120: 835}
    config = yaml.safe_load(converted.configs["landsat8"].read_text())
    assert set(config) == {"aois", "catalog", "sensor", "cube", "labels", "predict", "classes"}
    assert config["predict"] == {"period": {"start": "2018-01-01", "end": "2018-11-30"}}
    assert config["labels"]["static"] is True and config["labels"]["value_map"][2130] == 3


@pytest.mark.workflow
def test_landsat_map_lies_on_the_patch_grid(landsat_run: Path) -> None:
    cube = xr.open_zarr(landsat_run / "cube.zarr")
    assert cube.attrs["crs"] == "EPSG:32631" and list(cube.attrs["transform"])[:6] == list(GRID)[:6]
    assert cube.sizes["time"] == 24 and cube.sizes["band"] == 6  # 26 acquisitions on 24 days (two same-day pairs)
    composite = xr.open_zarr(landsat_run / "composite.zarr")
    assert composite.sizes["time"] == 31 and str(composite["time"].values[-1])[:10] == MAP_STEP
    with rasterio.open(landsat_run / "maps" / "semi_convlstm" / "classes.tif") as src:
        assert src.crs.to_epsg() == 32631 and src.transform == GRID and src.shape == (64, 64)
        classes = src.read(1)
    assert set(np.unique(classes)) <= {0, 1, 2, 3} and (classes > 0).mean() > 0.9


@pytest.mark.workflow
def test_landsat_report_scores_the_test_blocks_only(landsat_run: Path) -> None:
    labels = xr.open_zarr(landsat_run / "labels.zarr").load()
    split, reference = labels["split"].values, labels["reference"].values
    assert split.shape == (64, 64) and set(np.unique(split)) == {0, 1, 2}
    assert labels.attrs["design"]["kind"] == "spatial_blocks"
    assert str(labels["time"].values[-1])[:10] == MAP_STEP

    report = json.loads((landsat_run / "reports" / "semi_convlstm" / "accuracy.json").read_text())
    assert report["design"]["kind"] == "spatial_blocks" and report["map_date"] == MAP_STEP
    test = (split == 1) & (reference[-1] > 0)
    assert report["evaluated_pixels"] == report["design"]["test_pixels"] == int(test.sum())
    support = {name: c["support"] for name, c in report["per_class"].items()}
    assert sum(support.values()) == int(test.sum()) == int(np.sum(report["confusion_matrix"]))
    # every class is in the test blocks and keeps training pixels (stratified blocks)
    assert all(n > 0 for n in support.values()) and (reference[-1][split == 0] > 0).any()
    with rasterio.open(landsat_run / "maps" / "semi_convlstm" / "classes.tif") as src:
        mapped = src.read(1)
    assert report["overall_accuracy"] == pytest.approx(float(np.mean(mapped[test] == reference[-1][test])))


@pytest.mark.workflow
def test_sentinel2_cube_resamples_the_20m_bands_onto_the_10m_grid(sentinel2_cube: worldcereal.Converted,
                                                                   data_dir: Path) -> None:
    converted = sentinel2_cube
    item = json.loads(min((converted.catalogs["sentinel2"] / "items").glob("*.json")).read_text())
    assert item["assets"]["B11"]["proj:shape"] == [32, 32] and item["properties"]["proj:shape"] == [64, 64]
    cube = xr.open_zarr(converted.dest / "results" / AOI / "cube.zarr")
    assert cube.sizes["time"] == 118 and list(cube.attrs["transform"])[:6] == list(GRID)[:6]
    d10, d20 = worldcereal.open_netcdf("S2_L2A_10m", data_dir), worldcereal.open_netcdf("S2_L2A_20m", data_dir)
    i = 107  # 2018-10-21, clear
    assert str(d10["timestamp"].values[i])[:10] == str(cube["time"].values[i])[:10] == "2018-10-21"
    last = cube.isel(time=i).load()
    refl = last["reflectance"]
    np.testing.assert_allclose(refl.sel(band="red").values, d10["B04"].values[i] * 1e-4, rtol=1e-6)
    up = np.repeat(np.repeat(d20["B11"].values[i], 2, axis=0), 2, axis=1)  # 20 m pixel = 2 x 2 pixels at 10 m
    np.testing.assert_allclose(refl.sel(band="swir16").values, up * 1e-4, rtol=1e-6)
    scl = np.repeat(np.repeat(d20["SCL"].values[i], 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(last["valid"].values, ~np.isin(scl, [0, 1, 3, 8, 9, 10, 11]))
