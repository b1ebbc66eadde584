"""Weights of the feature stem: the first convolution (``conv1``) of an ImageNet ResNet.

Sources, in this order:

1. ``stem_weights`` (a local file) when given: a torchvision-format checkpoint (``.pth`` /
   ``.pt``, a state dict, possibly nested under ``"state_dict"`` or ``"model"`` and/or with
   a ``"module."`` prefix; read with ``torch.load(weights_only=True)``) or a stem-only ``.npz``
   holding ``conv1.weight``.
2. Otherwise the official torchvision checkpoint, through
   ``torch.hub.load_state_dict_from_url(url, check_hash=True, map_location="cpu")``. It is
   cached in ``<torch hub dir>/checkpoints/<file name of the URL>`` (``$TORCH_HOME/hub`` or
   ``~/.cache/torch/hub``): a cached file is used without network. torch verifies the
   sha256 prefix in the file name when it *downloads*; a file already in the cache is
   trusted as is (torch's own behaviour), and one that cannot be read raises
   :class:`WeightsError` naming it.

Nothing here ever falls back from a ResNet to the Gabor bank (:mod:`pipeline.enrich.gabor`):
missing weights raise :class:`WeightsError` saying where to put the file.

Only ``conv1.weight`` is used (no batch norm, no ReLU): see :mod:`pipeline.enrich.stem`.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
import torch.hub

from pipeline.enrich.gabor import gabor_filter_bank
from pipeline.enrich.options import StemName
from pipeline.errors import WeightsError

log = logging.getLogger(__name__)

#: Official torchvision ImageNet checkpoints (``IMAGENET1K_V1``); the hex part of the file
#: name is the sha256 prefix ``check_hash`` verifies at download.
RESNET_URLS: dict[str, str] = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
}

#: Shape of every supported stem: (out channels, in channels RGB, kernel y, kernel x).
STEM_SHAPE: tuple[int, int, int, int] = (64, 3, 7, 7)
CONV1_KEY = "conv1.weight"


@dataclass(frozen=True)
class StemWeights:
    """A stem kernel and where it came from.

    Attributes:
        weight: (64, 3, 7, 7) float32, ``conv1.weight`` (out, in RGB, ky, kx), no bias.
        stem: the stem name (``resnet18`` ... ``gabor``).
        source: URL, file path or ``"gabor (generated)"``, recorded in the store attrs.
    """

    weight: np.ndarray
    stem: str
    source: str


def hub_checkpoint_path(stem: str) -> Path:
    """Where torch.hub caches the official checkpoint of ``stem`` (honours ``TORCH_HOME``)."""
    name = Path(urlparse(RESNET_URLS[stem]).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def load_stem_weights(stem: StemName, *, stem_weights: str | None = None) -> StemWeights:
    """Load the (64, 3, 7, 7) float32 stem kernel of ``stem``; see the module docstring."""
    if stem == "gabor":
        if stem_weights is not None:
            raise WeightsError(
                "stem 'gabor' takes no weights file; remove stem_weights or pick a resnet stem"
            )
        return StemWeights(gabor_filter_bank(), "gabor", "gabor (generated)")
    if stem not in RESNET_URLS:
        raise WeightsError(f"unknown stem {stem!r}; choose one of {sorted(RESNET_URLS)} or 'gabor'")
    if stem_weights is not None:
        weight = load_conv1_file(stem_weights)
        return StemWeights(weight, stem, str(Path(stem_weights).resolve()))
    return StemWeights(_load_conv1_hub(stem), stem, RESNET_URLS[stem])


def load_conv1_file(path: str | Path) -> np.ndarray:
    """Read ``conv1.weight`` from a ``.npz`` or a torchvision ``.pth`` checkpoint.

    Returns (64, 3, 7, 7) float32. Raises :class:`WeightsError` for a missing / unreadable
    file, a missing key or a wrong shape.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(
            f"stem weights file {p} does not exist; fix features.stem_weights or remove it "
            f"to use the torch hub cache"
        )
    if p.suffix.lower() == ".npz":
        try:
            with np.load(p, allow_pickle=False) as npz:
                if CONV1_KEY not in npz.files:
                    raise WeightsError(
                        f"{p} holds {sorted(npz.files)} but no '{CONV1_KEY}'; save the ResNet "
                        f"first convolution under that key"
                    )
                return _check_kernel(npz[CONV1_KEY], source=str(p))
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise WeightsError(f"cannot read stem weights {p} ({exc}); replace the file") from exc
    state = _torch_load(p)
    return extract_conv1(state, source=str(p))


def extract_conv1(state: Mapping[str, Any], *, source: str) -> np.ndarray:
    """Take ``conv1.weight`` out of a (possibly nested / ``module.``-prefixed) state dict."""
    for nest in ("state_dict", "model"):
        inner = state.get(nest) if isinstance(state, Mapping) else None
        if isinstance(inner, Mapping):
            state = inner
    if not isinstance(state, Mapping):
        raise WeightsError(f"{source} is not a state dict; save model.state_dict() instead")
    for key in (CONV1_KEY, f"module.{CONV1_KEY}"):
        if key in state:
            return _check_kernel(state[key], source=source)
    raise WeightsError(
        f"{source} has no '{CONV1_KEY}' (keys start with {sorted(state)[:5]}); use a "
        f"torchvision ResNet checkpoint or an .npz with '{CONV1_KEY}'"
    )


def adapt_input_channels(weight: np.ndarray, n_channels: int) -> np.ndarray:
    """Adapt a (64, 3, 7, 7) stem to ``n_channels`` inputs (timm's ``adapt_input_conv`` rule).

    3 -> unchanged; 1 -> sum over the RGB inputs; otherwise the RGB kernels are repeated
    cyclically to ``n_channels`` inputs (R, G, B, R, ...) and scaled by ``3 / n_channels`` to
    keep the response magnitude (exactly the same response to a constant input when
    ``n_channels`` is a multiple of 3). Returns (64, n_channels, 7, 7) float32.
    """
    if n_channels == weight.shape[1]:
        return weight.astype(np.float32, copy=True)
    if n_channels == 1:
        return weight.sum(axis=1, keepdims=True).astype(np.float32)
    reps = -(-n_channels // weight.shape[1])
    tiled = np.tile(weight, (1, reps, 1, 1))[:, :n_channels]
    return (tiled * (weight.shape[1] / n_channels)).astype(np.float32)


def _load_conv1_hub(stem: str) -> np.ndarray:
    url = RESNET_URLS[stem]
    cached = hub_checkpoint_path(stem)
    hint = (
        f"put the official checkpoint {cached.name} ({url}) at {cached} (the torch hub cache; "
        f"set TORCH_HOME to move it), or set features.stem_weights to a local .pth/.npz "
        f"holding '{CONV1_KEY}' (64, 3, 7, 7), or choose stem 'gabor' explicitly"
    )
    if not cached.exists():
        log.info("downloading %s to %s", url, cached)
    try:
        state = torch.hub.load_state_dict_from_url(
            url, check_hash=True, map_location="cpu", progress=False, weights_only=True
        )
    except Exception as exc:  # network (URLError), hash (RuntimeError), unpickling, zip errors
        if cached.exists():
            raise WeightsError(
                f"cached ImageNet {stem} checkpoint {cached} is unreadable or corrupt ({exc}); "
                f"delete it so it is downloaded again, or {hint}"
            ) from exc
        raise WeightsError(f"cannot download ImageNet {stem} weights ({exc}); {hint}") from exc
    return extract_conv1(state, source=str(cached))


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, runtime) for bad files
        raise WeightsError(
            f"cannot read stem weights {path} as a torch checkpoint ({exc}); use a "
            f"torchvision state dict (.pth) or an .npz with '{CONV1_KEY}'"
        ) from exc


def _check_kernel(value: Any, *, source: str) -> np.ndarray:
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if arr.shape != STEM_SHAPE:
        raise WeightsError(
            f"'{CONV1_KEY}' in {source} has shape {arr.shape}, expected {STEM_SHAPE} (the 7x7 "
            f"first convolution of ResNet-18/34/50); use weights of one of those models"
        )
    if not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all():
        raise WeightsError(f"'{CONV1_KEY}' in {source} is not finite floating point; replace it")
    return arr.astype(np.float32)
