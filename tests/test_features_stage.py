"""Stage ``python -m pipeline.features`` end to end on a tiny cube.zarr (EPSG:32649)."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.hub
import xarray as xr
import zarr

from pipeline.enrich import FeatureOptions, build_features
from pipeline.errors import ConfigError
from pipeline.features import main
from pipeline.raster.zarr_io import open_store, write_zarr_atomic

torch.set_num_threads(1)

NPZ = Path(__file__).resolve().parents[1].parent / "shared" / "weights" / "resnet18_imagenet_conv1.npz"
needs_npz = pytest.mark.skipif(not NPZ.is_file(), reason=f"shared test weights absent: {NPZ}")
BANDS = ["coastal", "blue", "green", "red", "nir08", "swir16", "swir22"]
T, H, W = 3, 40, 52


def _write_cube(path: Path, seed: int = 0) -> xr.Dataset:
    """A cube.zarr as pipeline.cube writes it: 3 dates, 40 x 52 px at 30 m, EPSG:32649."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    field = (np.sin(xx / 5.0) + np.cos(yy / 7.0))[None, None]  # spatial structure
    slope = np.linspace(0.5, 1.5, 7, dtype=np.float32)[None, :, None, None]
    refl = (0.15 + 0.05 * field * slope + 0.02 * rng.standard_normal((T, 7, H, W))).astype(np.float32)
    refl[0, :, :4, :6] = np.nan  # nodata corner
    refl[2, 5, 20, 30] = np.nan  # one missing band
    valid = np.ones((T, H, W), bool)
    valid[1, 10:18, 12:25] = False  # a cloud (finite values kept)
    refl[1, :, 10:18, 12:25] = 0.9
    valid &= np.isfinite(refl).all(axis=1) | (rng.random((T, H, W)) > 0.5)  # some NaN left "valid"
    ds = xr.Dataset(
        {
            "reflectance": (("time", "band", "y", "x"), refl),
            "qa": (("time", "y", "x"), np.zeros((T, H, W), np.uint16)),
            "valid": (("time", "y", "x"), valid),
            "valid_fraction": (("time",), valid.mean(axis=(1, 2)).astype(np.float32)),
        },
        coords={
            "time": np.array(["2021-05-03", "2021-05-19", "2021-06-04"], dtype="datetime64[ns]"),
            "band": BANDS,
            "y": 5_200_000.0 - 30.0 * np.arange(H) - 15.0,
            "x": 600_000.0 + 30.0 * np.arange(W) + 15.0,
        },
        attrs={"crs": "EPSG:32649", "transform": [30.0, 0.0, 600_000.0, 0.0, -30.0, 5_200_000.0]},
    ).chunk({"time": 1, "band": -1, "y": 20, "x": 26})
    write_zarr_atomic(ds, path)
    return ds.load()


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty torch hub cache and no network (the download function fails)."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"


def _explicit_stem_pixel(z: np.ndarray, w: np.ndarray, o: int, y: int, x: int) -> float:
    """Stem output channel o at pixel (y, x) by explicit 7x7 sums + bilinear (h, w even)."""
    zp = np.pad(z.astype(np.float64), ((0, 0), (3, 3), (3, 3)))

    def conv(i: int, j: int) -> float:
        return float(np.sum(w[o].astype(np.float64) * zp[:, 2 * i : 2 * i + 7, 2 * j : 2 * j + 7]))

    sy, sx = max((y + 0.5) / 2 - 0.5, 0.0), max((x + 0.5) / 2 - 0.5, 0.0)
    i0, j0 = int(sy), int(sx)
    ly, lx = sy - i0, sx - j0
    i1, j1 = min(i0 + 1, z.shape[1] // 2 - 1), min(j0 + 1, z.shape[2] // 2 - 1)  # edge clamp
    return (
        (1 - ly) * (1 - lx) * conv(i0, j0) + (1 - ly) * lx * conv(i0, j1)
        + ly * (1 - lx) * conv(i1, j0) + ly * lx * conv(i1, j1)
    )


@needs_npz
def test_stage_end_to_end_imagenet(tmp_path: Path, offline_hub: Path) -> None:
    cube = _write_cube(tmp_path / "cube.zarr")
    out = tmp_path / "features.zarr"
    opts = {"stem_weights": str(NPZ), "chunk": 24, "pca_sample": 5000, "seed": 3}
    rc = main(["--cube", str(tmp_path / "cube.zarr"), "--out", str(out), "--options", json.dumps(opts), "--threads", "2"])
    assert rc == 0
    ds = open_store(out, required=("features", "valid"))
    f = ds["features"]
    assert f.dims == ("time", "channel", "y", "x") and f.shape == (T, 64 + 7, H, W)
    assert f.dtype == np.float16
    assert list(ds["channel"].values) == [f"stem_{i:02d}" for i in range(64)] + BANDS
    assert ds.attrs["crs"] == "EPSG:32649" and ds.attrs["transform"] == cube.attrs["transform"]
    np.testing.assert_array_equal(ds["x"].values, cube["x"].values)
    np.testing.assert_array_equal(ds["time"].values, cube["time"].values)
    assert ds.attrs["features_stem"] == "resnet18" and ds.attrs["features_pca_mode"] == "global"
    assert ds.attrs["features_options"]["chunk"] == 24
    assert f.encoding["chunks"] == (1, 71, 24, 24)
    codecs = zarr.open_group(out)["features"].metadata.codecs
    assert any("Blosc" in type(c).__name__ for c in codecs)
    assert not list(tmp_path.glob(".tmp-*"))

    refl, valid = cube["reflectance"].values, cube["valid"].values
    ok = valid & np.isfinite(refl).all(axis=1)
    np.testing.assert_array_equal(ds["valid"].values, ok)
    values = f.values.astype(np.float32)
    assert np.isfinite(values).all()
    # reflectance channels: the cube's bands, NaN stored as 0, cloud values kept
    np.testing.assert_allclose(values[:, 64:], np.nan_to_num(refl), rtol=1e-3, atol=1e-4)
    # stem channels: independent computation from the recorded PCA and the npz kernel
    mean = np.array(ds.attrs["features_pca_mean"][0])
    comps = np.array(ds.attrs["features_pca_components"][0])
    std = np.array(ds.attrs["features_pca_std"][0])
    t = 1
    z = np.einsum("kb,byx->kyx", comps / std[:, None], refl[t] - mean[:, None, None])
    z[:, ~ok[t]] = 0.0
    with np.load(NPZ) as npz:
        w = npz["conv1.weight"]
    for o, y, x in ((0, 0, 0), (7, 11, 23), (40, 24, 24), (63, 39, 51)):
        expect = _explicit_stem_pixel(z, w, o, y, x)
        assert values[t, o, y, x] == pytest.approx(expect, rel=2e-3, abs=2e-3), (o, y, x)
    assert np.abs(values[:, :64]).max() > 1.0


def test_stage_gabor_per_date_matches_in_memory(tmp_path: Path, offline_hub: Path) -> None:
    cube = _write_cube(tmp_path / "cube.zarr", seed=4)
    opts = FeatureOptions(stem="gabor", pca_mode="per_date", chunk=17, dtype="float32")
    rc = main(["--cube", str(tmp_path / "cube.zarr"), "--out", str(tmp_path / "f.zarr"),
               "--options", json.dumps(opts.to_dict())])
    assert rc == 0
    got = open_store(tmp_path / "f.zarr")
    ref = build_features(cube, FeatureOptions(stem="gabor", pca_mode="per_date", chunk=512, dtype="float32"))
    np.testing.assert_allclose(got["features"].values, ref["features"].values, rtol=1e-5, atol=1e-5)
    assert got.attrs["features_stem_source"] == "gabor (generated)"
    assert len(got.attrs["features_pca_components"]) == T  # one PCA per date
    assert not offline_hub.exists()  # gabor never touched the hub cache


@pytest.mark.parametrize(
    "options, message",
    [
        ('{"pca": 3}', "unknown features option"),
        ('{"stem": "vgg16"}', "'stem' must be one of"),
        ('{"pca_components": 9, "stem": "gabor"}', "exceeds the cube's 7 bands"),
        ("not json", "not valid JSON"),
        ("{}", "put the official checkpoint"),  # resnet18 default, offline, empty cache
    ],
)
def test_stage_user_errors_exit_2(
    tmp_path: Path, offline_hub: Path, caplog: pytest.LogCaptureFixture, options: str, message: str
) -> None:
    _write_cube(tmp_path / "cube.zarr")
    out = tmp_path / "features.zarr"
    rc = main(["--cube", str(tmp_path / "cube.zarr"), "--out", str(out), "--options", options])
    assert rc == 2
    assert message in caplog.text
    assert not out.exists()


def test_stage_missing_cube_exit_2(tmp_path: Path) -> None:
    rc = main(["--cube", str(tmp_path / "nope.zarr"), "--out", str(tmp_path / "f.zarr"),
               "--options", '{"stem": "gabor"}'])
    assert rc == 2


def test_stage_on_a_dask_distributed_scheduler(tmp_path: Path) -> None:
    from distributed import LocalCluster

    cube = _write_cube(tmp_path / "cube.zarr", seed=2)
    with LocalCluster(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as cluster:
        rc = main(["--cube", str(tmp_path / "cube.zarr"), "--out", str(tmp_path / "f.zarr"),
                   "--options", '{"stem": "gabor", "chunk": 20, "dtype": "float32"}',
                   "--scheduler", cluster.scheduler_address])
    assert rc == 0
    ref = build_features(cube, FeatureOptions(stem="gabor", chunk=512, dtype="float32"))
    got = open_store(tmp_path / "f.zarr")["features"].values
    np.testing.assert_allclose(got, ref["features"].values, rtol=1e-5, atol=1e-5)


def test_build_features_is_lazy_and_rejects_bad_cubes(tmp_path: Path) -> None:
    import dask.array as da

    from pipeline.errors import FeatureError

    cube = _write_cube(tmp_path / "cube.zarr")
    lazy = build_features(open_store(tmp_path / "cube.zarr"), FeatureOptions(stem="gabor", chunk=16))
    assert isinstance(lazy["features"].data, da.Array) and isinstance(lazy["valid"].data, da.Array)
    assert lazy["features"].data.chunks[2] == (16, 16, 8)
    with pytest.raises(FeatureError, match="no 'valid' variable"):
        build_features(cube.drop_vars("valid"), FeatureOptions(stem="gabor"))
    with pytest.raises(FeatureError, match="dims"):
        build_features(cube.transpose("band", "time", "y", "x"), FeatureOptions(stem="gabor"))
    with pytest.raises(FeatureError, match="float32"):
        build_features(cube.assign(reflectance=cube["reflectance"].fillna(0).astype("uint16")),
                       FeatureOptions(stem="gabor"))
    bare = cube.copy()
    bare.attrs = {}
    with pytest.raises(FeatureError, match="crs"):
        build_features(bare, FeatureOptions(stem="gabor"))


@pytest.mark.parametrize("validity_channel", [True, False])
def test_gridded_cube_gets_a_clear_channel_unless_switched_off(tmp_path: Path, validity_channel: bool) -> None:
    """A cube on a regular time grid (attrs ``time_grid``) gets the per-step ``clear`` channel,
    equal to the cube's ``valid`` mask; ``validity_channel: false`` drops it and changes nothing else."""
    cube = _write_cube(tmp_path / "cube.zarr")
    cube.attrs["time_grid"] = json.dumps({"period": "16D"})
    cube["reflectance"] = cube["reflectance"].fillna(0.2)  # a gap-filled grid: every step finite
    options = FeatureOptions(stem="gabor", dtype="float32", chunk=20, validity_channel=validity_channel)
    ds = build_features(cube, options)
    channels = [str(c) for c in ds.channel.values]
    assert channels[-len(BANDS) - validity_channel:][: len(BANDS)] == BANDS
    if validity_channel:
        assert channels[-1] == "clear"
        np.testing.assert_array_equal(ds["features"].sel(channel="clear").values, cube["valid"].values.astype(np.float32))
    else:
        assert "clear" not in channels
    plain = build_features(cube.assign_attrs(time_grid=""), options)  # the per-date cube never has it
    assert "clear" not in [str(c) for c in plain.channel.values]
    np.testing.assert_array_equal(ds["features"].sel(channel=BANDS).values, cube["reflectance"].values)


def test_validity_channel_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match="validity_channel"):
        FeatureOptions.from_mapping({"validity_channel": "no"})


def test_stores_written_with_the_former_zstd_codec_still_read(tmp_path: Path) -> None:
    """features.zarr is now written with Blosc lz4 + bit shuffle; a store written with the former
    zstd level 3 + byte shuffle reads back the same values (the codec is in the metadata)."""
    from zarr.codecs import BloscCodec

    cube = _write_cube(tmp_path / "cube.zarr", seed=2)
    ds = build_features(cube, FeatureOptions(stem="gabor", chunk=20)).compute()
    write_zarr_atomic(ds, tmp_path / "new.zarr")
    old = ds.copy()
    old["features"].encoding = {"compressors": (BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),)}
    write_zarr_atomic(old, tmp_path / "old.zarr")
    codecs = {name: json.dumps(zarr.open_array(tmp_path / name, path="features").metadata.to_dict()["codecs"])
              for name in ("new.zarr", "old.zarr")}
    assert '"lz4"' in codecs["new.zarr"] and '"bitshuffle"' in codecs["new.zarr"]
    assert '"zstd"' in codecs["old.zarr"]
    for name in ("new.zarr", "old.zarr"):
        got = open_store(tmp_path / name)["features"].values
        assert np.array_equal(got.view(np.uint16), ds["features"].values.view(np.uint16)), name
