"""Checkpoints: atomic writes, safe loads (``weights_only=True``) and an embedded digest.

A checkpoint is a plain ``torch.save`` dict of tensors and primitives only (RNG states are
stored as tensors/lists), so ``torch.load(..., weights_only=True)`` can read it without
unpickling arbitrary objects. The dict carries ``"sha256"``: a digest of its content (every
tensor's dtype/shape/bytes and every primitive, keys sorted), recomputed on load; a truncated
or altered file raises :class:`~pipeline.errors.CheckpointError` instead of being used.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.atomic import atomic_path
from pipeline.errors import CheckpointError

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


def save_checkpoint(payload: Mapping[str, object], path: str | os.PathLike[str]) -> Path:
    """Write ``payload`` (tensors, dicts, lists and primitives only) with its digest, atomically
    (temporary sibling, fsync, rename)."""
    data = dict(payload)
    data["format"] = FORMAT_VERSION
    data[DIGEST_KEY] = content_digest(data)
    final = Path(path)
    with atomic_path(final) as tmp, open(tmp, "wb") as fh:
        torch.save(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return final


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


def capture_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """RNG states of python, numpy (legacy global), torch CPU, every CUDA device and
    ``generator``, as tensors/lists (weights_only-safe)."""
    version, py_state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss},
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng_state(state: Mapping[str, Any], generator: torch.Generator | None = None) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])
