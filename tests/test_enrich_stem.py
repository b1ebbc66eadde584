"""Stem weights (ImageNet conv1 from npz / .pth / torch hub cache, Gabor bank) and the stem
computation (explicit 7x7 sums, chunked == unchunked)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.hub
import xarray as xr

from pipeline.enrich import (
    FeatureOptions,
    adapt_input_channels,
    build_features,
    gabor_filter_bank,
    hub_checkpoint_path,
    load_stem_weights,
    stem_dense,
)
from pipeline.enrich.pca import fit_pca
from pipeline.enrich.stem import bilinear_source
from pipeline.errors import ConfigError, WeightsError

torch.set_num_threads(1)

NPZ = Path(__file__).resolve().parents[1].parent / "shared" / "weights" / "resnet18_imagenet_conv1.npz"
needs_npz = pytest.mark.skipif(not NPZ.is_file(), reason=f"shared test weights absent: {NPZ}")
BANDS = ["coastal", "blue", "green", "red", "nir08", "swir16", "swir22"]


def _npz_weight() -> np.ndarray:
    with np.load(NPZ) as f:
        return f["conv1.weight"]


def _cube(t: int = 2, h: int = 40, w: int = 52, seed: int = 0) -> xr.Dataset:
    """Smooth-ish random reflectance with NaN holes and invalid pixels, EPSG:32649 grid."""
    rng = np.random.default_rng(seed)
    base = rng.random((t, 3, h, w)).astype(np.float32)
    mix = rng.random((7, 3)).astype(np.float32)
    refl = np.einsum("bc,tcyx->tbyx", mix, base) / 3 + 0.02 * rng.random((t, 7, h, w))
    refl = refl.astype(np.float32)
    refl[0, :, 3:6, 4:9] = np.nan
    refl[-1, 2, min(10, h - 1), min(11, w - 1)] = np.nan
    valid = rng.random((t, h, w)) > 0.15
    return xr.Dataset(
        {"reflectance": (("time", "band", "y", "x"), refl), "valid": (("time", "y", "x"), valid)},
        coords={
            "time": (np.datetime64("2021-05-01", "D") + 16 * np.arange(t)).astype("datetime64[ns]"),
            "band": BANDS,
            "y": 5_100_000.0 - 30 * np.arange(h) - 15,
            "x": 400_000.0 + 30 * np.arange(w) + 15,
        },
        attrs={"crs": "EPSG:32649", "transform": [30.0, 0.0, 400_000.0, 0.0, -30.0, 5_100_000.0]},
    )


# --------------------------------------------------------------------------- weights


@needs_npz
def test_npz_weights_are_the_imagenet_conv1() -> None:
    sw = load_stem_weights("resnet18", stem_weights=str(NPZ))
    ref = _npz_weight()
    assert sw.weight.shape == (64, 3, 7, 7) and sw.weight.dtype == np.float32
    np.testing.assert_array_equal(sw.weight, ref)
    # a few entries and the sum of the real ImageNet ResNet-18 conv1 (read from the file)
    np.testing.assert_allclose(sw.weight[0, 0, 0, :3], [-0.01041935, -0.00613561, -0.00180978], rtol=1e-5)
    assert float(sw.weight.sum()) == pytest.approx(0.2767812, rel=1e-5)
    assert sw.source == str(NPZ.resolve())


@needs_npz
def test_one_output_pixel_equals_explicit_7x7_sum_and_bilinear() -> None:
    w = _npz_weight()
    rng = np.random.default_rng(3)
    h, wd = 20, 18
    z = rng.standard_normal((3, h, wd)).astype(np.float32)
    out = stem_dense(torch.from_numpy(z)[None], torch.from_numpy(w))[0].numpy()

    zp = np.pad(z.astype(np.float64), ((0, 0), (3, 3), (3, 3)))  # zero padding 3

    def conv(o: int, i: int, j: int) -> float:  # stride-2 sample centred on input (2i, 2j)
        total = 0.0
        for c in range(3):
            for a in range(7):
                for b in range(7):
                    total += float(w[o, c, a, b]) * zp[c, 2 * i + a, 2 * j + b]
        return total

    o, y, x = 5, 7, 10
    # align_corners=False, h even: source row = (y + 0.5) / 2 - 0.5
    sy, sx = (y + 0.5) / 2 - 0.5, (x + 0.5) / 2 - 0.5  # 3.25, 4.75
    i0, j0 = int(np.floor(sy)), int(np.floor(sx))
    ly, lx = sy - i0, sx - j0
    expect = (
        (1 - ly) * (1 - lx) * conv(o, i0, j0) + (1 - ly) * lx * conv(o, i0, j0 + 1)
        + ly * (1 - lx) * conv(o, i0 + 1, j0) + ly * lx * conv(o, i0 + 1, j0 + 1)
    )
    assert out[o, y, x] == pytest.approx(expect, rel=1e-5, abs=1e-5)
    # top-left corner: source clamps to 0 -> the stride-2 sample centred on pixel (0, 0)
    assert out[o, 0, 0] == pytest.approx(conv(o, 0, 0), rel=1e-5, abs=1e-5)


def test_bilinear_source_matches_torch_for_odd_sizes() -> None:
    for size in (9, 10, 37, 41):
        n_in = (size + 1) // 2
        eye = torch.eye(n_in)[None, None]  # row i of the input is the one-hot of i
        up = torch.nn.functional.interpolate(eye, size=(size, n_in), mode="bilinear", align_corners=False)[0, 0]
        i0, i1, lam = bilinear_source(0, size, size=size)
        mine = np.zeros((size, n_in))
        mine[np.arange(size), i0] += 1 - lam
        mine[np.arange(size), i1] += lam
        np.testing.assert_allclose(mine, up.numpy(), atol=1e-6)


@needs_npz
def test_pth_checkpoint_and_nested_state_dict(tmp_path: Path) -> None:
    ref = torch.from_numpy(_npz_weight())
    plain = tmp_path / "resnet18_local.pth"
    torch.save({"conv1.weight": ref, "bn1.weight": torch.ones(64), "fc.bias": torch.zeros(1000)}, plain)
    np.testing.assert_array_equal(load_stem_weights("resnet18", stem_weights=str(plain)).weight, ref.numpy())
    nested = tmp_path / "ddp.pt"
    torch.save({"state_dict": {"module.conv1.weight": ref}}, nested)
    np.testing.assert_array_equal(load_stem_weights("resnet34", stem_weights=str(nested)).weight, ref.numpy())


def test_wrong_shape_missing_key_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "small.npz"
    np.savez(bad, **{"conv1.weight": np.zeros((64, 3, 3, 3), np.float32)})
    with pytest.raises(WeightsError, match=r"shape \(64, 3, 3, 3\).*expected \(64, 3, 7, 7\)"):
        load_stem_weights("resnet18", stem_weights=str(bad))
    pth = tmp_path / "mobilenet.pth"
    torch.save({"conv1.weight": torch.zeros(32, 3, 3, 3)}, pth)
    with pytest.raises(WeightsError, match="shape"):
        load_stem_weights("resnet18", stem_weights=str(pth))
    nokey = tmp_path / "other.npz"
    np.savez(nokey, w=np.zeros(3))
    with pytest.raises(WeightsError, match="no 'conv1.weight'"):
        load_stem_weights("resnet18", stem_weights=str(nokey))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        load_stem_weights("resnet18", stem_weights=str(junk))
    with pytest.raises(WeightsError, match="does not exist"):
        load_stem_weights("resnet18", stem_weights=str(tmp_path / "nope.pth"))


def _no_network(*args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("network is unreachable (test: offline)")


def test_offline_empty_cache_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert hub_checkpoint_path("resnet18") == expected
    with pytest.raises(WeightsError) as err:
        load_stem_weights("resnet18")
    msg = str(err.value)
    assert str(expected) in msg and "stem_weights" in msg and "gabor" in msg
    assert not expected.exists()


@needs_npz
def test_preseeded_torch_home_is_used_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.hub checks the sha256 prefix of the file name only when it downloads; a file
    # already in <TORCH_HOME>/hub/checkpoints is loaded as is. So a torchvision-format state
    # dict holding the real conv1 under the official name stands in for the 46 MB checkpoint.
    # The download function is replaced by one that fails, to prove no network is used.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    ckpt = hub_checkpoint_path("resnet18")
    ckpt.parent.mkdir(parents=True)
    torch.save({"conv1.weight": torch.from_numpy(_npz_weight()), "bn1.bias": torch.zeros(64)}, ckpt)
    sw = load_stem_weights("resnet18")
    np.testing.assert_array_equal(sw.weight, _npz_weight())
    assert sw.source == "https://download.pytorch.org/models/resnet18-f37072fd.pth"


@needs_npz
def test_download_path_checks_hash_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # only the download function is monkeypatched: it records the call and writes the file
    calls: list[tuple[str, str, str | None]] = []

    def fake_download(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        calls.append((url, dst, hash_prefix))
        torch.save({"conv1.weight": torch.from_numpy(_npz_weight())}, dst)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    sw = load_stem_weights("resnet18")
    assert calls == [(
        "https://download.pytorch.org/models/resnet18-f37072fd.pth",
        str(hub_checkpoint_path("resnet18")), "f37072fd",
    )]
    np.testing.assert_array_equal(sw.weight, _npz_weight())


def test_corrupt_cached_checkpoint_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    ckpt = hub_checkpoint_path("resnet50")
    assert ckpt.name == "resnet50-0676ba61.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"\x00truncated download")
    with pytest.raises(WeightsError, match="corrupt") as err:
        load_stem_weights("resnet50")
    assert str(ckpt) in str(err.value) and "delete it" in str(err.value)


def test_no_silent_fallback_to_gabor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    with pytest.raises(WeightsError):
        build_features(_cube(h=16, w=16), FeatureOptions(stem="resnet34"))
    with pytest.raises(ConfigError, match="stem_weights"):
        FeatureOptions(stem="gabor", stem_weights=str(NPZ))


# --------------------------------------------------------------------------- gabor bank


def test_gabor_bank_deterministic_normalised_distinct() -> None:
    a, b = gabor_filter_bank(), gabor_filter_bank()
    assert a.shape == (64, 3, 7, 7) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    norms = np.sqrt((a.astype(np.float64) ** 2).sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(norms, 1.0, atol=1e-6)
    flat = a.reshape(64, -1).astype(np.float64)
    cos = np.abs(flat @ flat.T) - np.eye(64)
    assert cos.max() < 0.99  # no duplicated filter
    assert np.abs(a[:48, 1:]).max() == 0  # the 48 Gabor filters read PC1 only
    np.testing.assert_allclose(a[:48].sum(axis=(1, 2, 3)), 0.0, atol=1e-6)  # DC-free
    assert a[48, 0].sum() > 0 and a[49, 1].sum() > 0  # blobs keep the local mean


def test_gabor_orientation_selectivity() -> None:
    bank = gabor_filter_bank()
    xx = np.arange(-3, 4)
    vertical_stripes = np.cos(2 * np.pi * xx / 4.0)[None, :].repeat(7, axis=0)  # varies along x
    resp = np.abs((bank[:, 0] * vertical_stripes).sum(axis=(1, 2)))
    # scale 1 (wavelength 4): index = (8 + orientation) * 2 + phase; orientation 0 = along x
    assert resp[(8 + 0) * 2] > 5 * resp[(8 + 4) * 2]  # 0 deg >> 90 deg


def test_adapt_input_channels_keeps_constant_response() -> None:
    w = gabor_filter_bank() + 0.01
    np.testing.assert_array_equal(adapt_input_channels(w, 3), w)
    one = adapt_input_channels(w, 1)
    np.testing.assert_allclose(one[:, 0], w.sum(axis=1), rtol=1e-6)
    five = adapt_input_channels(w, 5)  # RGBRG, scaled by 3/5
    assert five.shape == (64, 5, 7, 7)
    np.testing.assert_allclose(five[:, 3], w[:, 0] * 3 / 5, rtol=1e-6)
    np.testing.assert_allclose(five[:, 2], w[:, 2] * 3 / 5, rtol=1e-6)
    six = adapt_input_channels(w, 6)  # a multiple of 3: same response to a constant input
    np.testing.assert_allclose(six.sum(axis=(1, 2, 3)), w.sum(axis=(1, 2, 3)), rtol=1e-5)


# --------------------------------------------------------------------------- chunking


def _dense_reference(cube: xr.Dataset, opts: FeatureOptions, weight: np.ndarray) -> np.ndarray:
    """Unchunked features: same PCA fit, z computed in numpy, stem on the whole image."""
    refl = cube["reflectance"].values
    ok = cube["valid"].values & np.isfinite(refl).all(axis=1)
    import dask.array as da

    fit = fit_pca(
        da.from_array(refl, chunks=(1, -1, -1, -1)), da.from_array(ok, chunks=(1, -1, -1)),
        n_components=opts.pca_components, mode=opts.pca_mode, sample=opts.pca_sample, seed=opts.seed,
    )
    zs = []
    for t in range(refl.shape[0]):
        scaled, mean = fit.projection(t)
        z = np.einsum("kb,byx->kyx", scaled, refl[t] - mean[:, None, None])
        zs.append(np.where(ok[t][None], z, 0.0))
    z = torch.from_numpy(np.stack(zs).astype(np.float32))
    return stem_dense(z, torch.from_numpy(adapt_input_channels(weight, opts.pca_components))).numpy()


@pytest.mark.parametrize("h,w", [(40, 52), (37, 45), (9, 5)])
@pytest.mark.parametrize("mode", ["global", "per_date"])
def test_chunked_equals_unchunked(h: int, w: int, mode: str) -> None:
    cube = _cube(h=h, w=w, seed=h)
    ref = _dense_reference(cube, FeatureOptions(stem="gabor", pca_mode=mode), gabor_filter_bank())  # type: ignore[arg-type]
    for chunk in (16, 17, 23, 30, 512):
        got = build_features(cube, FeatureOptions(stem="gabor", pca_mode=mode, chunk=chunk))  # type: ignore[arg-type]
        assert got["features"].data.chunks[2][0] == min(chunk, h)
        f = got["features"].values
        assert f.dtype == np.float16
        np.testing.assert_allclose(f[:, :64].astype(np.float32), ref, rtol=2e-3, atol=2e-3)


@needs_npz
def test_chunked_equals_unchunked_imagenet_two_components() -> None:
    cube = _cube(h=33, w=35, seed=5)
    opts = FeatureOptions(stem_weights=str(NPZ), pca_components=2, dtype="float32", chunk=17)
    ref = _dense_reference(cube, opts, _npz_weight())
    got = build_features(cube, opts)["features"].values[:, :64]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
    assert np.abs(ref).max() > 1.0  # the stem responds: the comparison is not vacuous


def test_device_choice() -> None:
    from pipeline.models.device import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda" and resolve_device("cuda").type == "cuda"
    else:
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="device='cuda'"):
            resolve_device("cuda")
