"""Object-based voting and segments: a vote never introduces a class absent from the segment,
clear majorities win, nodata stays, polygons' areas add up to the mapped area; the predict
option writes classes_voted.tif and segments.gpkg consistent with them."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
from conftest import with_test_design
from skimage.measure import label
from sklearn.decomposition import PCA

from pipeline import vote as vote_stage
from pipeline.errors import ConfigError, GridError
from pipeline.objects.options import SegmentOptions, voting_options
from pipeline.objects.segments import date_segments, pca_composite, segment_image
from pipeline.objects.voting import complete_segments, segment_polygons, vote
from pipeline.predict import PredictOptions, run_predict
from pipeline.raster.zarr_io import write_zarr_atomic
from pipeline.training.trainer import train_model
from pipeline.vote import run_vote

IDS = [1, 2, 4]
TABLE = [{"id": 1, "name": "crop", "color": "#e6c34a"}, {"id": 2, "name": "forest", "color": "#1b7837"},
         {"id": 4, "name": "water", "color": "#2166ac"}]
UTM = {"crs": "EPSG:32649", "transform": [30.0, 0.0, 500000.0, 0.0, -30.0, 4500000.0]}


def test_vote_never_introduces_an_absent_class() -> None:
    rng = np.random.default_rng(0)
    for trial in range(20):
        classes = rng.choice([0, 1, 2, 4], size=(15, 17), p=[0.1, 0.5, 0.3, 0.1]).astype(np.uint8)
        segments = rng.integers(0, 12, size=(15, 17)).astype(np.int32)
        probs = rng.dirichlet([0.3, 0.3, 5.0], size=(15, 17)).transpose(2, 0, 1)  # water likely by probability
        for method in ("majority", "probability"):
            voted = vote(classes, segments, class_ids=IDS, method=method, probabilities=probs)
            assert voted.dtype == np.uint8
            np.testing.assert_array_equal(voted == 0, classes == 0)
            np.testing.assert_array_equal(voted[segments == 0], classes[segments == 0])
            for s in range(1, 12):
                sel = (segments == s) & (classes != 0)
                if sel.any():
                    assert len(np.unique(voted[sel])) == 1
                    assert voted[sel][0] in set(classes[sel].tolist()), (trial, method, s)


def test_clear_majority_and_probability_vote() -> None:
    classes = np.array([[1, 1, 1, 2, 0], [1, 1, 2, 2, 4]], np.uint8)
    segments = np.array([[1, 1, 1, 1, 1], [1, 1, 2, 2, 2]], np.int32)
    # segment 1: five 1s, one 2 (+ a nodata pixel); segment 2: two 2s, one 4
    np.testing.assert_array_equal(vote(classes, segments, class_ids=IDS),
                                  [[1, 1, 1, 1, 0], [1, 1, 2, 2, 2]])
    probs = np.zeros((3, 2, 5))
    probs[0] = 0.4
    probs[1] = 0.6  # forest has the higher mean probability everywhere ...
    probs[2, :, 4] = 0.9  # ... and water at the last column, absent from segment 1's classes
    voted = vote(classes, segments, class_ids=IDS, method="probability", probabilities=probs)
    np.testing.assert_array_equal(voted, [[2, 2, 2, 2, 0], [2, 2, 2, 2, 2]])
    # a tie goes to the earlier class of the table
    assert vote(np.array([[2, 1]], np.uint8), np.array([[1, 1]]), class_ids=IDS).tolist() == [[1, 1]]


def test_complete_segments() -> None:
    seg = np.array([[1, 1, 0, 0], [2, 0, 0, 3]], np.int32)
    mapped = np.array([[True, False, True, True], [True, True, False, True]])
    out = complete_segments(seg, mapped)
    assert out[0, 1] == 0 and out[1, 2] == 0
    assert out[0, 2] == out[0, 3] and out[0, 2] > 3  # one new 4-connected segment
    assert out[1, 1] > 3 and out[1, 1] != out[0, 2]
    kept = (seg > 0) & mapped
    np.testing.assert_array_equal(out[kept], seg[kept])


def test_polygons_areas_sum_to_the_mapped_area() -> None:
    rng = np.random.default_rng(1)
    classes = rng.choice([0, 1, 2, 4], size=(20, 25), p=[0.15, 0.45, 0.3, 0.1]).astype(np.uint8)
    segments = complete_segments(np.repeat(np.repeat(np.arange(20).reshape(4, 5), 5, 0), 5, 1) + 1, classes > 0)
    probs = rng.dirichlet([1, 1, 1], size=(20, 25)).transpose(2, 0, 1)
    voted = vote(classes, segments, class_ids=IDS, probabilities=probs)
    gdf = segment_polygons(voted, segments, class_table=TABLE, probabilities=probs, **UTM)
    mapped = int((voted > 0).sum())
    assert gdf["pixels"].sum() == mapped
    np.testing.assert_allclose(gdf["area_m2"].sum(), mapped * 900.0)
    np.testing.assert_allclose(gdf.geometry.area.sum(), mapped * 900.0)
    np.testing.assert_allclose(gdf.geometry.area.to_numpy(), gdf["area_m2"].to_numpy())
    np.testing.assert_allclose(gdf["area_ha"].to_numpy(), gdf["area_m2"].to_numpy() / 1e4)
    assert gdf["segment"].is_unique and gdf.crs.to_epsg() == 32649
    for row in gdf.itertuples():
        sel = (segments == row.segment) & (voted > 0)
        assert row.class_id == voted[sel][0] and row.class_name == {1: "crop", 2: "forest", 4: "water"}[row.class_id]
        np.testing.assert_allclose(row.mean_probability, probs[IDS.index(row.class_id)][sel].mean(), rtol=1e-5)
    # polygons sit on the grid: the first pixel's centre is inside the polygon of its segment
    first = gdf[gdf["segment"] == segments[0, 0]].geometry.iloc[0] if classes[0, 0] else None
    if first is not None:
        assert first.contains(gpd.points_from_xy([500015.0], [4499985.0])[0])
    with pytest.raises(GridError, match="projected"):
        segment_polygons(voted, segments, class_table=TABLE, crs="EPSG:4326", transform=UTM["transform"])


def test_pca_composite_and_segments() -> None:
    rng = np.random.default_rng(2)
    bands = rng.normal(0.1, 0.02, (5, 30, 40))
    bands[:, 10:20, 5:25] += np.array([0.1, -0.05, 0.2, 0.0, 0.1])[:, None, None]
    bands[:, :3, :3] = np.nan
    comp, valid = pca_composite(bands)
    assert comp.shape == (30, 40, 3) and comp.dtype == np.float32
    assert not valid[:3, :3].any() and valid[3:].all() and (comp[:3, :3] == 0).all()
    assert comp.min() >= 0 and comp.max() <= 1
    ref = PCA(3).fit_transform(bands[:, valid].T)
    for j in range(3):  # same components up to the stretch (and sign)
        assert abs(np.corrcoef(comp[valid, j], np.clip(ref[:, j], *np.percentile(ref[:, j], [2, 98])))[0, 1]) > 0.999
    for method in ("felzenszwalb", "slic"):
        seg = segment_image(comp, valid, options=SegmentOptions(method=method, size=20))
        assert seg.dtype == np.int32 and (seg[:3, :3] == 0).all() and (seg[valid] > 0).all()
        assert 2 <= seg.max() < valid.sum()
        for s in range(1, seg.max() + 1):
            assert label(seg == s, connectivity=1).max() == 1  # 4-connected: one polygon each
        # the bright rectangle is not merged with the background
        assert not set(np.unique(seg[12:18, 8:22])) & set(np.unique(seg[25:, 30:]))
    with pytest.raises(ConfigError, match="segment"):
        SegmentOptions(method="watershed")  # type: ignore[arg-type]


def test_vote_stage_writes_voted_map_and_polygons(tmp_path: Path) -> None:
    """The vote stage on a predicted map: the voted classes equal the voting functions applied to
    the map, its segments and the probabilities as stored (uint8 percent); polygons cover the
    mapped area; bad input names the fix."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n, ny, nx = 4, 21, 26
    yy, xx = np.mgrid[0:ny, 0:nx]
    cls = ((yy // 7) + (xx // 9)) % 3
    feats = np.stack([np.where(cls == c, 0.3, 0.05) for c in range(3)])[None].repeat(n, 0)
    feats = feats + rng.normal(0, 0.05, feats.shape)
    coords = {"time": np.datetime64("2021-01-01", "ns") + np.arange(n) * np.timedelta64(16, "D"),
              "y": 4500000 - 15 - 30 * np.arange(ny), "x": 500015 + 30 * np.arange(nx)}
    valid = np.ones((n, ny, nx), bool)
    valid[:, :2, :3] = False
    f = xr.Dataset({"features": (("time", "channel", "y", "x"), feats.astype(np.float16)),
                    "valid": (("time", "y", "x"), valid)}, coords={**coords, "channel": ["red", "nir08", "swir16"]},
                   attrs=UTM)
    lab = with_test_design(xr.Dataset({"labels": (("time", "y", "x"), np.broadcast_to(np.array(IDS, np.uint8)[cls], (n, ny, nx)).copy())},
                                      coords=coords, attrs=UTM), TABLE)
    model_dir = tmp_path / "models" / "unet"
    train_model(f, lab, model_dir, {"classes": TABLE, "model": "unet", "time_steps": 1, "patch": 8, "stride": 8,
                                    "epochs": 2, "val_fraction": 0.0, "buffer": 0, "device": "cpu", "unet_depth": 1,
                                    "unet_width": 4, "lr": 0.02})
    fz = write_zarr_atomic(f, tmp_path / "features.zarr")
    out = tmp_path / "maps" / "unet"
    run_predict(fz, model_dir, out, PredictOptions.from_options({"tile": 16}), name="t")
    with rasterio.open(out / "classes.tif") as ds:
        classes = ds.read(1)
    with rasterio.open(out / "probabilities.tif") as ds:
        stored = ds.read()
    probs = np.where(stored == 255, np.nan, stored / 100.0)
    seg_options = SegmentOptions(size=10)
    segments = complete_segments(date_segments(f, n - 1, options=seg_options), classes > 0)
    for method in ("majority", "probability"):
        voted_dir = out / f"voted-{method}"
        assert vote_stage.main(["--map", str(out), "--features", str(fz), "--out", str(voted_dir),
                                "--options", json.dumps({"voting": method, "segment_size": 10})]) == 0
        with rasterio.open(voted_dir / "classes.tif") as ds:
            voted = ds.read(1)
            assert ds.crs.to_epsg() == 32649 and ds.nodata == 0 and ds.colormap(1)[2][:3] == (0x1b, 0x78, 0x37)
            assert list(ds.transform)[:6] == UTM["transform"]
        expected = vote(classes, segments, class_ids=IDS, method=method, probabilities=probs)
        np.testing.assert_array_equal(voted, expected)
        assert (voted[:2, :3] == 0).all() and (voted > 0).sum() == ny * nx - 6
        gdf = gpd.read_file(voted_dir / "segments.gpkg", layer="segments")
        np.testing.assert_allclose(gdf["area_m2"].sum(), (voted > 0).sum() * 900.0)
        assert set(gdf["class_id"]) <= set(np.unique(voted[voted > 0]).tolist())
        assert gdf["mean_probability"].between(0, 1).all()
        assert (voted_dir / "classes.qml").exists()
    with pytest.raises(ConfigError, match="majority"):
        voting_options({"voting": "none"})
    with pytest.raises(ConfigError, match="segment"):
        voting_options({"voting": "majority", "segment_method": "watershed"})
    # features of another grid: refused, naming both grids
    other = write_zarr_atomic(f.isel(x=slice(0, 20)), tmp_path / "other.zarr")
    with pytest.raises(GridError, match="not on the grid"):
        run_vote(out, other, tmp_path / "bad", {"voting": "majority"})
