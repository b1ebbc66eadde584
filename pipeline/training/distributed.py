"""Data-parallel training with ``torch.distributed`` (DDP) under ``torchrun``.

``torchrun --standalone --nproc_per_node N -m pipeline.train ...`` starts N copies of the train
stage with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and ``LOCAL_WORLD_SIZE`` in their
environment; :func:`process_group` detects that (``WORLD_SIZE`` > 1), joins the process group
(``gloo`` on CPU, ``nccl`` on CUDA with device ``cuda:LOCAL_RANK``) and leaves it at the end,
also on error. Without ``torchrun`` nothing here does anything: a single process trains exactly
as before (:data:`SINGLE`, every helper is then the identity).

The scheme (see :mod:`pipeline.training.loop`): every rank draws the same window order from the
same seeded generator and takes its share (:func:`shard`) of each global batch of
``batch_size`` windows; the loss normalizers are the global pixel counts (:func:`all_reduce_sum`)
times the world size (DDP averages gradients), so N processes with a share of the batch each
compute the gradient of one process with the whole batch, up to float rounding.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` (0..size-1), ``size`` (processes in all),
    ``local_rank`` / ``local_size`` (processes on this machine; ``local_rank`` picks the GPU)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def active(self) -> bool:
        """True under a multi-process ``torchrun`` launch."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes the outputs."""
        return self.rank == 0


SINGLE = World()


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer; launch the train stage "
                          f"with torchrun (which sets it) or unset it") from None


def launched_world(env: Mapping[str, str] | None = None) -> World:
    """The :class:`World` that ``torchrun`` describes in ``env`` (default ``os.environ``);
    :data:`SINGLE` without ``WORLD_SIZE`` or with ``WORLD_SIZE=1``."""
    env = os.environ if env is None else env
    size = _env_int(env, "WORLD_SIZE", 1)
    if size <= 1:
        return SINGLE
    rank = _env_int(env, "RANK", -1)
    local_rank = _env_int(env, "LOCAL_RANK", rank)
    local_size = _env_int(env, "LOCAL_WORLD_SIZE", size)
    if not 0 <= rank < size or not 0 <= local_rank < local_size:
        raise ConfigError(f"inconsistent torchrun environment RANK={rank}, LOCAL_RANK={local_rank}, "
                          f"WORLD_SIZE={size}, LOCAL_WORLD_SIZE={local_size}; launch with torchrun")
    return World(rank, size, local_rank, local_size)


def threads_per_process(threads: int | None, world: World) -> int | None:
    """CPU threads of one process: the job's ``threads`` shared by the processes of this
    machine (at least 1); ``threads`` unchanged in a single process."""
    if threads is None or not world.active:
        return threads
    return max(1, threads // world.local_size)


def check_batch_size(batch_size: int, world: World, *, option: str) -> None:
    """ConfigError unless the global batch of ``batch_size`` windows splits evenly over the ranks."""
    if world.active and batch_size % world.size:
        lower = (batch_size // world.size) * world.size
        fixes = [f"{lower}" if lower else None, f"{lower + world.size}"]
        raise ConfigError(
            f"train option '{option}' = {batch_size} is the global batch, split over {world.size} processes, "
            f"and must be divisible by {world.size}; set it to {' or '.join(f for f in fixes if f)}, "
            f"or change --nproc_per_node (the train_model resource 'nproc')"
        )


def shard(indices: Tensor, world: World) -> Tensor:
    """This rank's share of one global batch ``indices`` (n,) int64: contiguous pieces whose
    sizes differ by at most one, the larger ones first (rank 0's share is never empty); their
    concatenation over the ranks is ``indices``."""
    if not world.active:
        return indices
    return torch.tensor_split(indices, world.size)[world.rank]


def resolve_rank_device(device: torch.device, world: World) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` on CUDA (ConfigError if this machine has
    fewer GPUs than processes), ``device`` otherwise."""
    if not world.active or device.type != "cuda":
        return device
    n = torch.cuda.device_count()
    if world.local_rank >= n:
        raise ConfigError(f"{world.local_size} training processes on this machine but only {n} CUDA GPU(s) visible; "
                          f"set the train_model resource 'nproc' (torchrun --nproc_per_node) to at most {n}")
    return torch.device("cuda", world.local_rank)


@contextlib.contextmanager
def process_group(device: torch.device, world: World | None = None) -> Iterator[tuple[World, torch.device]]:
    """Join the ``torchrun`` process group for training on ``device`` and leave it afterwards
    (also when the body raises). Yields (world, device of this rank). In a single process it
    yields (:data:`SINGLE`, ``device``) and does nothing else. Once per process: torchrun's
    rendezvous store does not take a second ``init_process_group`` after the first is destroyed.
    If one rank fails, the others wait in their next collective until torchrun stops them."""
    world = launched_world() if world is None else world
    if not world.active:
        yield SINGLE, device
        return
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run the train stage without torchrun (nproc 1)")
    device = resolve_rank_device(device, world)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=TIMEOUT, device_id=device if device.type == "cuda" else None)
    log.info("rank %d of %d (local %d of %d) joined the %s process group on %s", world.rank, world.size,
             world.local_rank, world.local_size, backend, device)
    try:
        yield world, device
    finally:
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    """Device of the tensors of a collective: the current GPU under nccl, CPU under gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(t: Tensor, world: World) -> Tensor:
    """Sum of ``t`` over the ranks (a new tensor on ``t``'s device, same dtype); ``t`` itself in
    a single process."""
    if not world.active:
        return t
    buf = t.detach().to(_comm_device(), copy=True)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(t.device)


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` (picklable) on every rank."""
    if not world.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, world: World) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` in a single process."""
    if not world.active:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(module: nn.Module, world: World) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics, ...) to every rank, in place."""
    if not world.active:
        return
    for buf in module.buffers():
        tmp = buf.detach().to(_comm_device(), copy=True)
        dist.broadcast(tmp, src=0)
        buf.copy_(tmp.to(buf.device))


def barrier(world: World) -> None:
    """Wait until every rank got here (no-op in a single process)."""
    if world.active:
        dist.barrier()


def rank_seed(seed: int, world: World) -> int:
    """Seed of this rank's global torch generator (dropout, input noise) under DDP: distinct per
    rank, so the ranks do not draw the same masks for different windows."""
    return (seed * 1_000_003 + 7919 * (world.rank + 1)) % 2**63


def capture_rank_rng(device: torch.device, world: World) -> list[dict[str, Tensor]]:
    """Every rank's global torch generator state (CPU, and ``device``'s on CUDA), in rank order,
    as tensors (weights_only-safe, for the checkpoint). A collective: call it on every rank."""
    own = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        own["cuda"] = torch.cuda.get_rng_state(device)
    return [{k: v.cpu() for k, v in d.items()} for d in gather_objects(own, world)]


def restore_rank_rng(states: list[dict[str, Tensor]] | None, device: torch.device, world: World, *,
                     seed: int) -> None:
    """Restore this rank's generator from ``states`` (:func:`capture_rank_rng` of a run with as
    many ranks); otherwise (fresh start, or a checkpoint of another world size) seed it with
    ``seed`` (:func:`rank_seed`)."""
    if states is not None and len(states) == world.size:
        own = states[world.rank]
        torch.set_rng_state(own["torch"])
        if device.type == "cuda" and "cuda" in own:
            torch.cuda.set_rng_state(own["cuda"], device)
        return
    torch.manual_seed(seed)


def wrap_model(model: nn.Module, device: torch.device, world: World) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel (BatchNorm made SyncBatchNorm on CUDA, so
    the batch statistics are those of the global batch); ``model`` itself in a single process.
    The parameters are shared with ``model``: optimize and save ``model``, call the wrapper."""
    if not world.active:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index], output_device=device.index)
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        log.warning("BatchNorm on CPU under DDP normalizes each process's share of the batch (SyncBatchNorm needs "
                    "CUDA): the gradients differ slightly from a single process with the whole batch")
    return nn.parallel.DistributedDataParallel(model)
