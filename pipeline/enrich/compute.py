"""Paper eq. 1 on a cube: ``X_p = concat(upsample_bilinear(ResNet_conv1(PCA(X))), X)``.

:func:`build_features` turns a ``cube.zarr`` dataset into the lazy ``features.zarr`` dataset
(layouts in :mod:`pipeline.raster.zarr_io`). Chunks are (1 date, all bands, ``chunk``,
``chunk``); each chunk is computed with a halo of :data:`pipeline.enrich.stem.HALO` pixels
(one task per chunk assembles its window from the cube chunks it overlaps, NaN beyond the
cube, so pixels beyond the image are invalid and enter the stem as 0, the zero padding of the
unchunked convolution), which makes the chunked
result equal to the unchunked one at chunk seams and image borders. Memory is bounded by a
few chunks per dask worker. The stem runs on CUDA when available (``device``).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import dask.array as da
import numpy as np
import torch
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from pipeline.enrich.options import FeatureOptions
from pipeline.enrich.pca import PcaFit, fit_pca
from pipeline.enrich.stem import HALO, stem_window
from pipeline.enrich.weights import adapt_input_channels, load_stem_weights
from pipeline.errors import ConfigError, FeatureError
from pipeline.models.device import resolve_device
from pipeline.raster.zarr_io import features_encoding

log = logging.getLogger(__name__)

N_STEM = 64
_TORCH_DTYPES = {"float16": torch.float16, "float32": torch.float32}
SCALING_DOC = (
    "stem input z_j = ((x - pca_mean) . pca_components_j) / pca_std_j (mean 0, std 1 over "
    "sampled valid pixels, the statistics of ImageNet-normalised inputs), no clipping; "
    "PC1->R, PC2->G, PC3->B; invalid pixels z = 0"
)
UPSAMPLING_DOC = (
    "torch F.interpolate bilinear align_corners=False from ceil(h/2) x ceil(w/2) stride-2 "
    "samples (centred on even input pixels) to h x w: for even h the feature at pixel y is "
    "the stem response at y - 0.5 px"
)


def fit_cube_pca(cube: xr.Dataset, options: FeatureOptions) -> PcaFit:
    """The PCA fit :func:`build_features` makes on ``cube`` (same checks, chunks and sample).

    Used for a tiled AOI (:mod:`pipeline.tiling.plan`): fitted once on the AOI mosaic of the tile
    cubes (the sample is drawn by pixel position, so it equals the untiled one) and passed to
    every tile's :func:`build_features`.
    """
    refl, valid = _check_cube(cube)
    _check_pca_components(options, refl.shape[1])
    c = options.chunk
    r = refl.data.rechunk((1, -1, c, c))
    ok = valid.data.astype(bool).rechunk((1, c, c)) & da.isfinite(r).all(axis=1)
    return fit_pca(
        r, ok, n_components=options.pca_components, mode=options.pca_mode,
        sample=options.pca_sample, seed=options.seed,
    )


CLEAR_CHANNEL = "clear"


def build_features(
    cube: xr.Dataset, options: FeatureOptions, *, pca: PcaFit | None = None,
    origin: tuple[int, int] = (0, 0), image_shape: tuple[int, int] | None = None,
) -> xr.Dataset:
    """Lazy features of a cube (paper eq. 1); only the PCA sample is computed eagerly.

    Args:
        cube: ``cube.zarr`` dataset: ``reflectance`` (time, band, y, x) float32 unitless,
            NaN = nodata; ``valid`` (time, y, x) bool; attrs ``crs``, ``transform``; y/x are
            pixel centres in that CRS.
        options: feature options.
        pca: a PCA fitted beforehand (one per date of ``cube``), instead of fitting one on
            ``cube``: a tile of a tiled AOI uses the AOI's fit (:func:`fit_cube_pca`).
        origin: (row, col) of the cube's first pixel in a larger image, and
        image_shape: that image's (h, w) - a tile window of an AOI grid. The stem's stride-2
            phase, its zero padding at the image border and the bilinear upsampling follow the
            whole image, so the features equal the whole image's except within
            :data:`~pipeline.enrich.stem.HALO` px of a cube edge inside the image. Default:
            the cube is the whole image.

    Returns:
        Dataset with ``features`` (time, channel, y, x) in ``options.dtype``: channels
        ``stem_00``..``stem_63`` (stem responses, unitless) then the reflectance bands
        (unitless, nodata NaN stored as 0) and, for a cube on a regular time grid (attrs
        ``time_grid``: gap-filled composites), a last channel ``clear`` (1 = the step holds a
        clear observation, 0 = filled or missing; the stem then also runs on filled values);
        ``valid`` (time, y, x) bool = cube ``valid`` and every band finite. Same time/y/x coords and grid attrs as the cube, plus attrs
        documenting stem, PCA and scaling. Chunks (1, channel, chunk, chunk).

    Raises:
        FeatureError: the cube lacks variables/dims or has no valid pixel.
        ConfigError: options incompatible with the cube (pca_components > bands, device).
        WeightsError: stem weights missing, corrupt or of the wrong shape.
    """
    refl, valid = _check_cube(cube)
    _, n_b, h, w = refl.shape
    _check_pca_components(options, n_b)
    device = resolve_device(options.device, what="features option")
    stem = load_stem_weights(options.stem, stem_weights=options.stem_weights)
    weight = adapt_input_channels(stem.weight, options.pca_components)
    c = options.chunk
    r = refl.data.rechunk((1, -1, c, c))
    v = valid.data.astype(bool).rechunk((1, c, c))
    ok = v & da.isfinite(r).all(axis=1)
    fit = _pca_fit(r, ok, options, pca)
    gridded = bool(cube.attrs.get("time_grid"))  # composites on a regular grid (pipeline.timegrid)
    stem_ok = da.isfinite(r).all(axis=1) if gridded else ok  # gap-filled steps feed the stem too
    feats = _stem_graph(r, stem_ok, fit=fit, weight=weight, device=device, dtype=options.dtype,
                        origin=origin, image_shape=image_shape or (h, w))
    channels = [f"stem_{i:02d}" for i in range(N_STEM)] + [str(b) for b in refl["band"].values]
    if gridded and options.validity_channel:  # the models see which steps hold a clear observation: a filled step is not an average one
        feats = da.concatenate([feats, v[:, None].astype(feats.dtype)], axis=1).rechunk((1, -1, c, c))
        channels.append(CLEAR_CHANNEL)
    ds = _features_dataset(cube, feats, ok, channels)
    ds.attrs.update(_attrs(options, stem.stem, stem.source, fit, device))
    return ds


def _check_pca_components(options: FeatureOptions, n_bands: int) -> None:
    """ConfigError unless ``options.pca_components`` fits in the cube's ``n_bands`` bands."""
    if options.pca_components > n_bands:
        raise ConfigError(
            f"features option 'pca_components'={options.pca_components} exceeds the cube's "
            f"{n_bands} bands; use 1..{n_bands}"
        )


def _pca_fit(r: da.Array, ok: da.Array, options: FeatureOptions, pca: PcaFit | None) -> PcaFit:
    """The PCA of :func:`build_features`: fitted on ``r`` (time, band, y, x) float32 where ``ok``
    (time, y, x) bool, or ``pca`` given beforehand, which must cover the same dates and bands
    (FeatureError otherwise)."""
    if pca is None:
        return fit_pca(
            r, ok, n_components=options.pca_components, mode=options.pca_mode,
            sample=options.pca_sample, seed=options.seed,
        )
    n_t, n_b = r.shape[:2]
    if pca.mean.shape != (n_t, n_b):
        raise FeatureError(
            f"the PCA fit covers {pca.mean.shape[0]} dates x {pca.mean.shape[1]} bands, the cube "
            f"{n_t} x {n_b}; rebuild the AOI's tile plan (results/<aoi>/tiles/plan.json)"
        )
    return pca


def _features_dataset(cube: xr.Dataset, feats: da.Array, ok: da.Array, channels: list[str]) -> xr.Dataset:
    """The features dataset: ``features`` (time, channel, y, x) ``feats`` named ``channels``,
    ``valid`` (time, y, x) ``ok``, the cube's time/y/x coords and attrs, and the store encoding
    of ``features.zarr`` (:func:`pipeline.raster.zarr_io.features_encoding`)."""
    coords: dict[str, Any] = {
        name: coord for name, coord in cube.coords.items() if set(coord.dims) <= {"time", "y", "x"}
    }
    coords["channel"] = ("channel", np.array(channels, dtype=object))
    ds = xr.Dataset(
        {
            "features": (("time", "channel", "y", "x"), feats),
            "valid": (("time", "y", "x"), ok),
        },
        coords=coords,
        attrs=dict(cube.attrs),
    )
    ds["features"].encoding = features_encoding()
    return ds


def _check_cube(cube: xr.Dataset) -> tuple[xr.DataArray, xr.DataArray]:
    for name, dims in (("reflectance", ("time", "band", "y", "x")), ("valid", ("time", "y", "x"))):
        if name not in cube:
            raise FeatureError(f"cube has no '{name}' variable; rebuild it with pipeline.cube")
        if tuple(cube[name].dims) != dims:
            raise FeatureError(
                f"cube '{name}' has dims {cube[name].dims}, expected {dims}; rebuild the cube"
            )
    refl = cube["reflectance"]
    if not np.issubdtype(refl.dtype, np.floating):
        raise FeatureError(
            f"cube reflectance is {refl.dtype}, expected float32 with NaN nodata; rebuild it"
        )
    if "crs" not in cube.attrs or "transform" not in cube.attrs:
        raise FeatureError("cube carries no 'crs'/'transform' attrs; rebuild it")
    if refl.shape[0] == 0 or refl.shape[2] == 0 or refl.shape[3] == 0:
        raise FeatureError(f"cube reflectance is empty {refl.shape}; check the cube stage")
    refl = refl.astype(np.float32)
    if not isinstance(refl.data, da.Array):
        refl = refl.chunk()
    valid = cube["valid"]
    if not isinstance(valid.data, da.Array):
        valid = valid.chunk()
    return refl, valid


def _stem_graph(
    r: da.Array, ok: da.Array, *, fit: PcaFit, weight: np.ndarray, device: torch.device,
    dtype: str, origin: tuple[int, int] = (0, 0), image_shape: tuple[int, int] | None = None,
) -> da.Array:
    """(time, 64 + band, y, x) dask array of stem features + NaN-free reflectance; ``r`` is the
    window of an image of ``image_shape`` (default: its own) starting at ``origin``.

    One task per output chunk assembles its window (core + :data:`HALO` px, NaN / False
    outside the cube) straight from the chunks of ``r`` and ``ok`` it overlaps - one copy, no
    padded, rechunked or overlapped intermediate arrays (their concatenations cost more than
    the convolution) - and computes the stem on it (:func:`_features_block`).
    """
    n_t, n_b, h, w = r.shape
    okc = ok.rechunk(r.chunks[:1] + r.chunks[2:])
    bounds = [np.cumsum((0,) + ch) for ch in r.chunks[2:]]
    projections = [fit.projection(t) for t in range(n_t)]
    name = "stem-features-" + tokenize(r.name, okc.name, projections, weight, str(device), dtype,
                                       origin, image_shape)
    fn = functools.partial(_features_block, projections=projections, weight=weight,
                           image_shape=image_shape or (h, w), device=str(device), out_dtype=np.dtype(dtype))
    dsk: dict[Any, Any] = {}
    for it in range(len(r.chunks[0])):
        for iy in range(len(r.chunks[2])):
            ys = _window_pieces(bounds[0], iy, h)
            for ix in range(len(r.chunks[3])):
                xs = _window_pieces(bounds[1], ix, w)
                place = [(a, b) for a in ys for b in xs]
                core = (int(bounds[0][iy]) + origin[0], int(bounds[0][iy + 1]) + origin[0],
                        int(bounds[1][ix]) + origin[1], int(bounds[1][ix + 1]) + origin[1])
                task_fn = functools.partial(fn, it=it, core=core, place=place)
                dsk[(name, it, 0, iy, ix)] = (
                    task_fn, [(r.name, it, 0, a[0], b[0]) for a, b in place],
                    [(okc.name, it, a[0], b[0]) for a, b in place],
                )
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[r, okc])
    return da.Array(graph, name, chunks=(r.chunks[0], (N_STEM + n_b,), r.chunks[2], r.chunks[3]),
                    meta=np.empty((0, 0, 0, 0), dtype=dtype))


def _window_pieces(bounds: np.ndarray, i: int, size: int) -> list[tuple[int, slice, slice]]:
    """Chunks along one axis that the window of chunk ``i`` (its core +- :data:`HALO`, clipped
    to ``[0, size)``) overlaps: ``(chunk index, slice in the chunk, slice in the window)``."""
    lo, hi = int(bounds[i]) - HALO, int(bounds[i + 1]) + HALO
    out = []
    for j in range(len(bounds) - 1):
        s, e = int(bounds[j]), int(bounds[j + 1])
        a, b = max(s, lo, 0), min(e, hi, size)
        if a < b:
            out.append((j, slice(a - s, b - s), slice(a - lo, b - lo)))
    return out


def _features_block(
    refl_pieces: list[np.ndarray], ok_pieces: list[np.ndarray], *,
    projections: list[tuple[np.ndarray, np.ndarray]], weight: np.ndarray, image_shape: tuple[int, int],
    device: str, out_dtype: np.dtype, it: int, core: tuple[int, int, int, int],
    place: list[tuple[tuple[int, slice, slice], tuple[int, slice, slice]]],
) -> np.ndarray:
    """One output chunk: its window assembled from the (1, band, cy, cx) reflectance and
    (1, cy, cx) valid chunks it overlaps (NaN / False outside the cube = outside the image or
    the tile: z = 0, the convolution's zero padding) -> (1, 64 + band, ch, cw) of date ``it``,
    ``core`` = its global (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = core
    n_b = refl_pieces[0].shape[1]
    win = np.full((n_b, y1 - y0 + 2 * HALO, x1 - x0 + 2 * HALO), np.nan, dtype=np.float32)
    okw = np.zeros(win.shape[1:], dtype=bool)
    for piece, okp, ((_, ry, wy), (_, rx, wx)) in zip(refl_pieces, ok_pieces, place):
        win[:, wy, wx] = piece[0, :, ry, rx]
        okw[wy, wx] = okp[0, ry, rx]
    scaled, mean = projections[it]
    dev = torch.device(device)
    with torch.no_grad():
        x = torch.from_numpy(win).to(dev)
        m = torch.from_numpy(okw).to(dev)
        centred = x - torch.from_numpy(mean).to(dev)[:, None, None]
        z = torch.einsum("kb,byx->kyx", torch.from_numpy(scaled).to(dev), centred)
        z = torch.where(m[None], z, torch.zeros((), device=dev))
        out = torch.empty(
            (N_STEM + x.shape[0], y1 - y0, x1 - x0), dtype=_TORCH_DTYPES[out_dtype.name], device=dev
        )
        stem_window(
            z, torch.from_numpy(weight).to(dev), origin=(y0 - HALO, x0 - HALO),
            core=(y0, y1, x0, x1), image_shape=image_shape, out=out[:N_STEM],
        )
        c = x[:, HALO : HALO + (y1 - y0), HALO : HALO + (x1 - x0)]
        out[N_STEM:] = torch.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0)
    return out.cpu().numpy()[None]


def _attrs(
    options: FeatureOptions, stem: str, source: str, fit: PcaFit, device: torch.device
) -> dict[str, Any]:
    return {
        "features_equation": "X_p = concat(upsample_bilinear(conv1(PCA(X))), X) (paper eq. 1)",
        "features_options": options.to_dict(),
        "features_stem": stem,
        "features_stem_source": source,
        "features_stem_layers": (
            "conv1 only: 7x7, stride 2, zero padding 3, no bias, no BN, no ReLU"
        ),
        "features_stem_channels": "stem_00..stem_63 = conv1 output channels, unitless",
        "features_pca_mode": fit.mode,
        "features_pca_components": int(fit.components.shape[1]),
        "features_scaling": SCALING_DOC,
        "features_upsampling": UPSAMPLING_DOC,
        "features_reflectance_nodata_fill": 0.0,
        "features_valid": "cube valid & all bands finite",
        "features_halo_px": HALO,
        "features_device": str(device),
        **{f"features_{k}": v for k, v in fit.attrs().items()},
    }
