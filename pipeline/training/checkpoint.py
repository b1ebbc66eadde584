"""Writing checkpoints (atomically, with their embedded digest) and the RNG states they carry.

The checkpoint format (weights_only-safe dict, ``"sha256"`` content digest, format version) and
reading it (:func:`~pipeline.models.files.load_checkpoint`) live in :mod:`pipeline.models.files`,
shared with the inference side.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.atomic import atomic_path
from pipeline.models.files import DIGEST_KEY, FORMAT_VERSION, content_digest


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
