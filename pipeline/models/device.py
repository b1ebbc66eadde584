"""Device selection, mixed precision and reproducibility settings for every torch stage.

One :func:`resolve_device` serves features (the stem), training and prediction.

GPU when available: CUDA with bf16 autocast and channels_last convolutions (cuDNN autotuning
on, so GPU runs are fast but not bit-reproducible). CPU otherwise: float32 and deterministic
kernels, so a seeded CPU run with the same thread count gives identical weights every time
(and after a resume).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)


DeviceChoice = Literal["auto", "cpu", "cuda"]


def resolve_device(preference: DeviceChoice = "auto", *, what: str = "train option") -> torch.device:
    """``"auto"`` -> cuda if available else cpu; ``"cuda"`` without a GPU -> ConfigError.

    ``what`` names the setting in that error (``"train option"``, ``"features option"``).
    """
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{what} device='cuda' but no CUDA GPU is visible; use 'auto' or 'cpu'")
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def set_cpu_threads(threads: int) -> int:
    """Set torch's intra-op threads to ``threads`` capped at :func:`usable_cpus` and return it:
    ``snakemake --cores 8`` on a 2-core machine gives a job 8 threads, and 8 torch threads on 2
    cores run several times slower than 2 (oversubscribed spin-waits)."""
    n = max(1, min(int(threads), usable_cpus()))
    if n < threads:
        log.info("torch threads %d (asked %d, %d usable CPUs)", n, threads, usable_cpus())
    torch.set_num_threads(n)
    return n


def configure_runtime(device: torch.device, *, threads: int | None = None) -> None:
    """Threads for CPU ops (capped at the usable CPUs); determinism on CPU for a fixed thread
    count; cuDNN autotune + TF32 on CUDA."""
    if threads is not None and threads > 0:
        set_cpu_threads(threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    # On CPU every op used here (convolutions, LSTM, gathers, Adam) is deterministic for a
    # fixed thread count; torch.use_deterministic_algorithms is not needed (and importing it
    # pulls in torch._dynamo, ~3 s).


def seed_everything(seed: int) -> None:
    """Seed python, numpy (legacy global) and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA, a no-op elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move ``model`` to ``device`` (channels_last convolution weights on CUDA)."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


@contextlib.contextmanager
def inference_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode + no grad, restoring the previous training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
