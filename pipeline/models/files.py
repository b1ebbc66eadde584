"""The trained-model folder (``results/{aoi}/models/{model}/``): its file names and reading a
checkpoint file.

Torch models: ``model.pt`` (best weights) and ``checkpoint.pt`` (last epoch, for resuming),
both written by :func:`pipeline.training.checkpoint.save_checkpoint`; scikit-learn baselines:
``model.joblib`` (a pickle) with ``model.json`` holding its sha256 (read by
:func:`pipeline.models.baseline.load_baseline`). The train side writes these files, the
inference side reads them; both import the names from here.

A checkpoint is a plain ``torch.save`` dict of tensors and primitives only (RNG states are
stored as tensors/lists), so ``torch.load(..., weights_only=True)`` can read it without
unpickling arbitrary objects. The dict carries ``"sha256"``: a digest of its content (every
tensor's dtype/shape/bytes and every primitive, keys sorted), recomputed on load; a truncated
or altered file raises :class:`~pipeline.errors.CheckpointError` instead of being used.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import CheckpointError

#: Best weights of a torch model (a checkpoint of kind "model").
MODEL_NAME = "model.pt"
#: Last finished epoch of a torch model, for resuming.
CHECKPOINT_NAME = "checkpoint.pt"
#: A fitted scikit-learn baseline (pickled :class:`pipeline.models.baseline.WindowPixelClassifier`).
JOBLIB_NAME = "model.joblib"
#: The baseline's metadata and the sha256 of its ``model.joblib``.
META_NAME = "model.json"

FORMAT_VERSION = 1
DIGEST_KEY = "sha256"


def _feed(h: Any, obj: object) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, Mapping):
        h.update(b"D%d" % len(obj))
        for k in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            h.update(f"K{type(k).__name__}:{k}".encode())
            _feed(h, obj[k])
    elif isinstance(obj, list | tuple):
        h.update(f"{type(obj).__name__}{len(obj)}".encode())
        for item in obj:
            _feed(h, item)
    elif obj is None or isinstance(obj, bool | int | float | str | torch.dtype | torch.Size):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    else:
        raise TypeError(f"checkpoint value of type {type(obj).__name__} is not weights_only-safe")


def content_digest(payload: Mapping[str, object]) -> str:
    """sha256 over the content of ``payload`` (without its own digest key)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != DIGEST_KEY})
    return h.hexdigest()


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and verify a checkpoint on CPU; raise CheckpointError if missing, unreadable,
    unsafe or altered."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist; train the model first")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, unsafe global, ...
        raise CheckpointError(
            f"checkpoint {p} cannot be read ({type(exc).__name__}: {str(exc)[:200]}); it is corrupt or "
            f"not a pipeline checkpoint - delete it and retrain"
        ) from exc
    if not isinstance(data, dict) or DIGEST_KEY not in data:
        raise CheckpointError(f"checkpoint {p} carries no content digest; it was not written by this pipeline - retrain")
    if data.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {p} has format {data.get('format')!r}, expected {FORMAT_VERSION}; retrain")
    if content_digest(data) != data[DIGEST_KEY]:
        raise CheckpointError(f"checkpoint {p} fails its sha256 check (corrupted on disk); delete it and retrain")
    return data
