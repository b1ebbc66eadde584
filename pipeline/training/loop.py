"""Epoch loop of the torch models: eq. (3) loss, validation, early stopping, checkpoints.

Each epoch ends with ``metrics.csv`` rewritten, ``model.pt`` written when the monitored value
improved and ``checkpoint.pt`` written last (all atomically). The checkpoint holds every piece
of state the next epoch depends on (weights, optimizer, scheduler, RNG states, early-stopping
state, history), so a run killed at any point and restarted continues from the last finished
epoch and, on CPU, ends with bit-identical weights to an uninterrupted run.

Under ``torchrun`` the loop is data-parallel (DDP, :mod:`pipeline.training.distributed`): each
rank trains on its share of every global batch with the loss normalized by the global pixel
counts, so the gradients and the reported losses are those of one process with the whole batch.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from pipeline.atomic import write_text_atomic
from pipeline.models.device import autocast, inference_mode
from pipeline.models.files import CHECKPOINT_NAME, MODEL_NAME, load_checkpoint
from pipeline.training.augment import perturb
from pipeline.training.batches import Batch, WindowSource, epoch_order
from pipeline.training.checkpoint import (
    capture_rng_state,
    restore_rng_state,
    save_checkpoint,
)
from pipeline.training.distributed import (
    SINGLE,
    World,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    broadcast_object,
    capture_rank_rng,
    check_batch_size,
    rank_seed,
    restore_rank_rng,
    shard,
    wrap_model,
)
from pipeline.training.losses import focal_loss_sum, minibatch_loss, rampup_weight
from pipeline.training.metrics import confusion_matrix, f1_weighted, overall_accuracy
from pipeline.training.options import TrainOptions

log = logging.getLogger(__name__)

METRIC_COLUMNS = ("epoch", "train_loss", "sup_loss", "cons_loss", "w", "labelled_share", "val_loss", "val_oa", "val_f1",
                  "lr", "seconds")
METRICS_NAME = "metrics.csv"


@dataclass
class FitResult:
    """Outcome of :func:`fit`. ``epochs_run`` counts finished epochs (including those of an
    earlier, resumed run); ``completed`` is False when ``on_epoch_end`` stopped it."""

    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    epochs_run: int
    stopped_early: bool
    completed: bool
    resumed_from: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _monitor(options: TrainOptions, has_val: bool) -> tuple[str, str]:
    if not has_val:
        return "train_loss", "min"
    return options.monitor, ("min" if options.monitor == "val_loss" else "max")


def _make_scheduler(opt: torch.optim.Optimizer, options: TrainOptions, mode: str) -> Any:
    if options.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=options.epochs)
    if options.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=0.5, patience=max(1, options.patience // 2))
    return None


def evaluate(model: nn.Module, src: WindowSource, *, device: torch.device, batch_size: int, num_classes: int,
             gamma: float, alpha: Tensor | None, world: World = SINGLE) -> dict[str, float]:
    """Validation loss (focal, per labelled pixel), overall accuracy and weighted F1.

    Under DDP each rank scores its :func:`shard` of the windows with ``model`` (the unwrapped
    module, same weights and buffers on every rank) and the loss sums and confusion matrices
    are summed over the ranks: every rank returns the values of the whole validation set.
    """
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    mine = shard(torch.arange(len(src)), world)
    with inference_mode(model):
        for i in range(0, len(mine), batch_size):
            b = src.batch(mine[i : i + batch_size]).to(device)
            with autocast(device):
                logits = model(b.x)
            s, n = focal_loss_sum(logits, b.target, gamma=gamma, alpha=alpha)
            total += s.double().cpu()
            count += int(n)
            cm += confusion_matrix(logits.argmax(1), b.target, num_classes)
    if world.active:
        total = all_reduce_sum(total, world)
        count = int(all_reduce_sum(torch.tensor(count, dtype=torch.int64), world))
        cm = all_reduce_sum(cm, world)
    cmn = cm.numpy()
    return {"val_loss": float(total / count) if count else float("nan"),
            "val_oa": overall_accuracy(cmn), "val_f1": f1_weighted(cmn)}


def window_budget(options: TrainOptions, src: WindowSource) -> int | None:
    """Labelled windows per epoch: ``max_windows_per_epoch`` patch windows, or for a pixel
    source (pixel_lstm) as many pixels as that many patches hold (``max_windows * patch**2``),
    so that the pixel model is not trained on a few hundred pixels while the others see
    thousands of patches' worth."""
    if options.max_windows_per_epoch is None:
        return None
    return options.max_windows_per_epoch * (1 if src.patch is not None else options.patch**2)


def labelled_share(src: WindowSource, order: Tensor) -> float:
    """Share of labelled pixels among the pixels with data in the windows ``order`` (n,) of
    ``src`` (each window counted as often as it occurs): the M/N of the Pi-model's weight
    scaling for the windows of one epoch; 0 for an empty order."""
    counts = src.pixel_counts()[order.cpu()].sum(0)
    return float(counts[0]) / float(counts[1]) if int(counts[1]) > 0 else 0.0


def _local_batch(src: WindowSource, indices: Tensor, world: World, device: torch.device) -> Batch:
    """This rank's share of the global batch ``indices``. A rank left without a window (the
    last, partial batch of an epoch with fewer windows than ranks) gets a copy of the batch's
    first window with every pixel masked: it takes part in DDP's gradient all-reduce with a
    zero loss and zero gradients."""
    mine = shard(indices, world)
    if mine.numel():
        return src.batch(mine).to(device)
    b = src.batch(indices[:1]).to(device)
    return Batch(b.x, torch.full_like(b.target, -1), torch.zeros_like(b.usable))


def stochastic_pass(model: nn.Module, x: Tensor, device: torch.device, noise: dict[str, Any]) -> Tensor:
    """Logits (N, K, *S) of ``model`` on a :func:`perturb`-ed copy of windows ``x`` (N, t, C, *S)."""
    with autocast(device):
        return model(perturb(x, **noise))


def _train_epoch(model: nn.Module, src: WindowSource, opt: torch.optim.Optimizer, *, options: TrainOptions,
                 device: torch.device, generator: torch.Generator, w: float, alpha: Tensor | None,
                 batch_size: int, channel_std: Tensor, desc: str, world: World = SINGLE) -> tuple[dict[str, float], int]:
    """One epoch over :func:`epoch_order` in batches of ``batch_size`` windows; returns the mean
    (loss, sup_loss, cons_loss) over the steps taken, the ``labelled_share`` of the epoch's
    windows, and the number of steps. ``w`` is the ramped consistency weight; with
    ``consistency_scaling`` "labelled_share" the term is weighted by ``w * labelled_share``
    (the same on every rank: every rank draws the same order). ``model`` is the DDP wrapper
    under DDP: each rank then trains on its share of every batch, and a batch is skipped
    (weight 0 and no label) only when it holds no label on any rank."""
    model.train()
    order = epoch_order(src.labelled, budget=window_budget(options, src),
                        unlabelled_ratio=options.unlabelled_window_ratio, generator=generator)
    share = labelled_share(src, order)
    if options.consistency_scaling == "labelled_share":
        w = w * share
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    steps = 0
    noise = {"noise_std": options.noise_std, "jitter": options.temporal_jitter, "channel_std": channel_std}
    for i in tqdm(range(0, len(order), batch_size), desc=desc, leave=False, disable=None if world.is_main else True):
        counts = None
        if world.active:
            b = _local_batch(src, order[i : i + batch_size], world, device)
            counts = all_reduce_sum(torch.stack([(b.target >= 0).sum(), b.usable.sum()]), world)
            has_labels = bool(counts[0] > 0)
        else:
            b = src.batch(order[i : i + batch_size]).to(device)
            has_labels = bool((b.target >= 0).any())
        if not has_labels and w == 0.0:
            continue
        logits = stochastic_pass(model, b.x, device, noise)
        second = functools.partial(stochastic_pass, model, b.x, device, noise) if w > 0.0 else None
        loss, sup, cons = minibatch_loss(logits, second, b.target, b.usable,
                                         gamma=options.focal_gamma, alpha=alpha, w=w,
                                         normalization=options.loss_normalization, global_counts=counts,
                                         world_size=world.size)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sums += torch.stack([loss.detach(), sup.detach(), cons.detach()]).double()
        steps += 1
    if world.active:  # each rank's terms are world.size x its share: the mean over ranks is the batch's value
        sums = all_reduce_sum(sums, world) / world.size
    means = (sums / max(steps, 1)).tolist()
    return {"train_loss": means[0], "sup_loss": means[1], "cons_loss": means[2], "labelled_share": share}, steps


def write_metrics(out_dir: Path, history: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in METRIC_COLUMNS})
    write_text_atomic(out_dir / METRICS_NAME, buf.getvalue())


def _better(value: float, best: float | None, mode: str) -> bool:
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best if mode == "min" else value > best


EpochCallback = Callable[[dict[str, float]], bool | None]
"""Called at the end of every epoch of :func:`fit` with its row of ``metrics.csv`` (after the
checkpoint is on disk): progress reporting, or a stop - returning True ends the run there (a
wall-time budget, say), to be resumed later from the checkpoint."""


@dataclass
class _Start:
    """Where :func:`fit` starts: the early-stopping state and history (``loop_state`` of the
    checkpoint), the first epoch (0-based), the optimizer step, the epoch resumed after (None
    for a fresh run) and the per-rank RNG states of the checkpoint (DDP)."""

    state: dict[str, Any]
    epoch: int = 0
    step: int = 0
    resumed: int | None = None
    rank_rng: list[dict[str, Any]] | None = None


def _fresh_state() -> dict[str, Any]:
    """The early-stopping state and history of a run that has not trained yet."""
    return {"best_value": None, "best_epoch": 0, "bad_epochs": 0, "finished": False, "stopped_early": False,
            "history": []}


def _resume(ckpt_path: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any, gen: torch.Generator, *,
            options: TrainOptions, meta: dict[str, Any], world: World) -> _Start:
    """Load ``ckpt_path`` into ``model``, ``opt``, ``sched`` and ``gen`` when it exists and was
    written with the same options, data and code (``meta`` data_signature, data_digest,
    code_digest: :func:`pipeline.plan.code_digest.code_digest` of the training stage); else a
    fresh start."""
    if not ckpt_path.exists():
        return _Start(_fresh_state())
    ck = load_checkpoint(ckpt_path)
    same_data = (list(ck.get("data_signature", [])) == list(meta["data_signature"])
                 and ck.get("data_digest") == meta.get("data_digest"))
    if ck.get("options_hash") != options.digest() or not same_data:
        if world.is_main:
            log.warning("%s was written with other options or data; training from scratch", ckpt_path)
        return _Start(_fresh_state())
    if ck.get("code_digest") != meta.get("code_digest"):
        if world.is_main:
            log.warning("%s was written by other code of the training stage; training from scratch", ckpt_path)
        return _Start(_fresh_state())
    model.load_state_dict(ck["model_state"])
    opt.load_state_dict(ck["optimizer_state"])
    if sched is not None and ck.get("scheduler_state") is not None:
        sched.load_state_dict(ck["scheduler_state"])
    restore_rng_state(ck["rng"], gen)
    epoch = int(ck["epoch"])
    if world.is_main:
        log.info("resuming from %s after epoch %d", ckpt_path, epoch)
    return _Start(dict(ck["loop_state"]), epoch, int(ck["step"]), epoch, ck.get("rank_rng"))


def _model_record(model: nn.Module, meta: dict[str, Any], options: TrainOptions, *, epoch: int,
                  metrics: dict[str, float]) -> dict[str, Any]:
    """The content of ``model.pt``: the weights of ``model`` after ``epoch`` (1-based) and that
    epoch's ``metrics`` row."""
    return {"kind": "model", **meta, "model_state": model.state_dict(), "epoch": epoch, "metrics": metrics,
            "options_json": options.to_json(), "options_hash": options.digest()}


def _checkpoint_record(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, gen: torch.Generator, *,
                       meta: dict[str, Any], options: TrainOptions, epoch: int, step: int, state: dict[str, Any],
                       ranks_rng: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The content of ``checkpoint.pt`` after ``epoch`` (1-based): every piece of state the next
    epoch depends on (module docstring)."""
    extra = {} if ranks_rng is None else {"rank_rng": ranks_rng}
    return {"kind": "checkpoint", **meta, "model_state": model.state_dict(), "optimizer_state": opt.state_dict(),
            "scheduler_state": None if sched is None else sched.state_dict(),
            "epoch": epoch, "step": step, "rng": capture_rng_state(gen), "loop_state": state,
            "options_json": options.to_json(), "options_hash": options.digest(), **extra}


def _epoch_row(net: nn.Module, model: nn.Module, train_src: WindowSource, val_src: WindowSource | None,
               opt: torch.optim.Optimizer, *, epoch: int, options: TrainOptions, device: torch.device,
               gen: torch.Generator, alpha: Tensor | None, batch_size: int, channel_std: Tensor, num_classes: int,
               world: World) -> tuple[dict[str, float], int]:
    """Train epoch ``epoch`` (0-based) with ``net`` (the DDP wrapper under DDP), validate
    ``model`` on ``val_src`` (when it holds windows) and return the epoch's ``metrics.csv`` row
    (the same on every rank) and the number of optimizer steps taken."""
    t0 = time.perf_counter()
    w = rampup_weight(epoch, w_max=options.w_max, rampup_epochs=options.rampup_epochs)
    train_m, n_steps = _train_epoch(net, train_src, opt, options=options, device=device, generator=gen, w=w,
                                    alpha=alpha, batch_size=batch_size, channel_std=channel_std,
                                    desc=f"epoch {epoch + 1}/{options.epochs}", world=world)
    val_m = {"val_loss": float("nan"), "val_oa": float("nan"), "val_f1": float("nan")}
    if val_src is not None and len(val_src) > 0:
        broadcast_buffers(model, world)  # BatchNorm statistics of rank 0, the ones saved
        val_m = evaluate(model, val_src, device=device, batch_size=batch_size, num_classes=num_classes,
                         gamma=options.focal_gamma, alpha=alpha, world=world)
    row: dict[str, float] = {"epoch": epoch + 1, **train_m, "w": w, **val_m,
                             "lr": float(opt.param_groups[0]["lr"]), "seconds": time.perf_counter() - t0}
    return broadcast_object(row, world), n_steps  # identical decisions on every rank


def _step_scheduler(sched: Any, value: float) -> None:
    """One step of the learning-rate scheduler (``value``: the monitored value, for plateau)."""
    if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
        sched.step(value)
    elif sched is not None:
        sched.step()


def _log_epoch(row: dict[str, float]) -> None:
    """The one log line of a finished epoch."""
    log.info("epoch %d: loss %.4f (sup %.4f, cons %.4f, w %.3g, labelled share %.3g) val_loss %.4f OA %.3f "
             "F1 %.3f [%.1fs]", row["epoch"], row["train_loss"], row["sup_loss"], row["cons_loss"], row["w"],
             row["labelled_share"], row["val_loss"], row["val_oa"], row["val_f1"], row["seconds"])


def _record_epoch(state: dict[str, Any], row: dict[str, float], *, key: str, mode: str,
                  options: TrainOptions) -> bool:
    """Add ``row`` to the history in ``state`` and update the early-stopping state; True when
    the monitored value ``key`` improved (the epoch's weights become ``model.pt``)."""
    value = row[key]
    epoch = int(row["epoch"])
    state["history"] = [*state["history"], row]
    improved = _better(value, state["best_value"], mode)
    if improved:
        state.update(best_value=value, best_epoch=epoch, bad_epochs=0)
    else:
        state["bad_epochs"] += 1
    if state["bad_epochs"] >= options.patience:
        state.update(finished=True, stopped_early=True)
    elif epoch >= options.epochs:
        state["finished"] = True
    return improved


def fit(
    model: nn.Module, train_src: WindowSource, val_src: WindowSource | None, *, options: TrainOptions,
    out_dir: Path, device: torch.device, alpha: Tensor | None, meta: dict[str, Any],
    on_epoch_end: EpochCallback | None = None, world: World = SINGLE,
) -> FitResult:
    """Train ``model`` (already on ``device``) on ``train_src``; resume from
    ``out_dir/checkpoint.pt`` when it exists and was written with the same options, data and code.

    ``meta``: model_name, model_config, classes, time_steps, data_signature, data_digest,
    code_digest (saved in ``model.pt`` and the checkpoint). ``on_epoch_end``
    (:data:`EpochCallback`): called after every epoch with its ``metrics.csv`` row, once the
    checkpoint is written; when it returns True
    before the last epoch the call ends there (``completed`` False; the checkpoint is left for a
    resume). Under DDP it is called on every rank and rank 0's answer decides.

    ``world``: under ``torchrun`` (:mod:`pipeline.training.distributed`) every rank calls this
    with the same model, data and options: the model is wrapped in DistributedDataParallel,
    each rank trains on its share of every global batch of ``batch_size`` windows (the same
    window order on every rank), validation is sharded, and only rank 0 writes
    ``metrics.csv``, ``model.pt`` and ``checkpoint.pt`` (the unwrapped module's weights, so
    they load in a single process). The dropout / input-noise generator is seeded per rank
    (:func:`~pipeline.training.distributed.rank_seed`) and saved per rank in the checkpoint.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    has_val = val_src is not None and len(val_src) > 0
    key, mode = _monitor(options, has_val)
    batch_size = options.pixel_batch_size if train_src.patch is None else options.batch_size
    check_batch_size(batch_size, world, option="pixel_batch_size" if train_src.patch is None else "batch_size")
    opt = torch.optim.Adam(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    sched = _make_scheduler(opt, options, mode)
    gen = torch.Generator().manual_seed(options.seed)
    std = model.standardize.channel_std  # type: ignore[union-attr]
    if alpha is not None:
        alpha = alpha.to(device)
    ckpt_path = out_dir / CHECKPOINT_NAME
    start = _resume(ckpt_path, model, opt, sched, gen, options=options, meta=meta, world=world)
    state, step = start.state, start.step
    if world.active:
        restore_rank_rng(start.rank_rng, device, world, seed=rank_seed(options.seed + start.epoch, world))
    if not has_val and world.is_main:
        log.warning("no validation split: early stopping and model selection use the training loss")
    net = wrap_model(model, device, world)
    model = net.module if world.active else net  # the same parameters, unwrapped: evaluated and saved

    for epoch in range(start.epoch, options.epochs):
        if state["finished"]:
            break
        row, n_steps = _epoch_row(net, model, train_src, val_src, opt, epoch=epoch, options=options, device=device,
                                  gen=gen, alpha=alpha, batch_size=batch_size, channel_std=std,
                                  num_classes=len(meta["classes"]), world=world)
        step += n_steps
        _step_scheduler(sched, row[key])
        if _record_epoch(state, row, key=key, mode=mode, options=options) and world.is_main:
            save_checkpoint(_model_record(model, meta, options, epoch=epoch + 1, metrics=row), out_dir / MODEL_NAME)
        ranks_rng = capture_rank_rng(device, world) if world.active else None  # collective: every rank
        if world.is_main:
            _log_epoch(row)
            write_metrics(out_dir, state["history"])
            save_checkpoint(_checkpoint_record(model, opt, sched, gen, meta=meta, options=options, epoch=epoch + 1,
                                               step=step, state=state, ranks_rng=ranks_rng), ckpt_path)
            if state["stopped_early"]:
                log.info("early stopping after epoch %d (best epoch %d)", epoch + 1, state["best_epoch"])
        barrier(world)  # no rank starts the next epoch before this one's checkpoint is on disk
        stop = on_epoch_end is not None and broadcast_object(bool(on_epoch_end(row)), world)
        if stop and not state["finished"]:
            return FitResult(state["best_epoch"], {}, state["history"], epoch + 1, False, False, start.resumed)
    if world.is_main and not (out_dir / MODEL_NAME).exists():  # the monitored value was never finite
        log.warning("%s was never finite; saving the last weights as %s", key, MODEL_NAME)
        save_checkpoint(_model_record(model, meta, options, epoch=len(state["history"]),
                                      metrics=state["history"][-1] if state["history"] else {}),
                        out_dir / MODEL_NAME)
    barrier(world)
    best_row = next((r for r in state["history"] if r["epoch"] == state["best_epoch"]), {})
    return FitResult(state["best_epoch"], dict(best_row), state["history"], len(state["history"]),
                     bool(state["stopped_early"]), True, start.resumed)
