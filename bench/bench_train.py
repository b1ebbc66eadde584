"""Training throughput of the Semi-ConvLSTM on CPU: windows/s of the project's training step.

One step is what ``pipeline.training.loop._train_epoch`` does for a batch: a perturbed first
pass (``loop.stochastic_pass``: input noise, temporal jitter, dropout), the second pass of the
consistency term, eq. (3) (``losses.minibatch_loss``: focal, class-balanced supervised term +
w * consistency term), backward and an Adam step. Models:

* ours: :class:`pipeline.models.convlstm.ConvLSTMClassifier` as trained (CPU: input-to-state
  convolution one step per call, no state convolution at step 0);
* reference: the same classifier with its cell replaced by the common ConvLSTM pattern
  (concatenate X_t and H_{t-1}, one convolution per step; ``bench_convlstm.ReferenceConvLSTM``),
  same weights (checked equal before timing);
* ``--variants`` adds ours with ``channels_last`` weights (as the CUDA path does), ours
  under ``torch.autocast("cpu", dtype=torch.bfloat16)`` and / or ours with both stochastic passes
  in one forward call of 2B windows (``joint``: the same loss, one recurrence instead of two).

Figure: windows/s = B / (seconds per step), median of ``--repeats`` steps per variant, the
variants interleaved so they see the same machine load. ``--check`` trains each variant 20
steps from the same weights on the same fixed batch and RNG seed and prints the loss
trajectories against float32 (the accuracy check of a faster variant).

    python bench/bench_train.py                                # demo shapes
    python bench/bench_train.py --shapes paper --batch 1 --repeats 2
    python bench/bench_train.py --variants channels_last bf16 --check 20
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine
from bench_convlstm import ReferenceConvLSTM

from pipeline.models.convlstm import ConvLSTMClassifier, ConvLSTMConfig
from pipeline.training.loop import stochastic_pass
from pipeline.training.losses import balanced_alpha, minibatch_loss
from pipeline.training.options import TrainOptions

SHAPES = {  # name: (B, t, C, H=W, hidden); C = 64 stem channels + the bands + the clear channel
    "demo": (4, 12, 72, 64, 16),  # Landsat 8/9, 7 bands, 12 monthly steps (config.yaml)
    "paper": (4, 20, 72, 128, 128),  # the paper's t, hidden and patch
    "sentinel2": (4, 33, 75, 64, 16),  # 10 bands, the 33 ten-day steps of a season (bench/README real data)
}
K = 4  # classes of the demo
LABELLED = 0.05  # labels.scarcity.pixel_fraction of the demo


@dataclass
class Variant:
    model: nn.Module
    opt: torch.optim.Optimizer
    bf16: bool = False
    channels_last: bool = False
    joint: bool = False


def make_batch(b: int, t: int, c: int, p: int, *, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Fixed synthetic batch: features (B, t, C, p, p) float32 with 2 % NaN, targets (B, p, p)
    int64 (a function of the inputs, ``LABELLED`` of the pixels labelled, -1 elsewhere), usable
    (B, p, p) bool."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, c, p, p, generator=g)
    target = (x[:, -3:, :K].mean(1).argmax(1)).long()
    target[torch.rand(b, p, p, generator=g) > LABELLED] = -1
    x[torch.rand(x.shape, generator=g) < 0.02] = float("nan")
    return x, target, torch.ones(b, p, p, dtype=torch.bool)


def make_models(c: int, hidden: int, names: list[str], lr: float) -> dict[str, Variant]:
    torch.manual_seed(0)
    ours = ConvLSTMClassifier(ConvLSTMConfig(c, K, hidden=hidden, dropout=TrainOptions.dropout))
    with torch.no_grad():
        assert ours.cell.peephole is not None
        ours.cell.peephole.normal_(0, 0.1)  # non-zero, so the equality check covers the peepholes
    ref = copy.deepcopy(ours)
    ref.cell = ReferenceConvLSTM(ours.cell)  # type: ignore[assignment]
    x = torch.randn(1, 3, c, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), ref.eval()(x), atol=1e-4, rtol=1e-4)
    models = {"ours": ours, "reference": ref}
    out: dict[str, Variant] = {}
    for name in names:
        base = models["reference" if name == "reference" else "ours"]
        m = copy.deepcopy(base).train()
        cl = "channels_last" in name
        if cl:
            m = m.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        out[name] = Variant(m, torch.optim.Adam(m.parameters(), lr=lr), bf16="bf16" in name, channels_last=cl,
                            joint="joint" in name)
    return out


def train_step(v: Variant, x: Tensor, target: Tensor, usable: Tensor, *, w: float, alpha: Tensor,
               options: TrainOptions) -> Tensor:
    """One optimizer step as ``loop._train_epoch`` takes it; returns the loss (detached)."""
    device = torch.device("cpu")
    noise = {"noise_std": options.noise_std, "jitter": options.temporal_jitter,
             "channel_std": v.model.standardize.channel_std}  # type: ignore[union-attr]
    ctx: Callable[[], contextlib.AbstractContextManager[object]] = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if v.bf16 else contextlib.nullcontext)
    if v.joint and w > 0.0:  # both stochastic passes in one forward call of 2B windows
        with ctx():
            logits, logits2 = stochastic_pass(v.model, torch.cat([x, x]), device, noise).chunk(2)
        second: Callable[[], Tensor] | None = lambda: logits2
    else:
        with ctx():
            logits = stochastic_pass(v.model, x, device, noise)
        second = (lambda: _second(v, x, device, noise, ctx)) if w > 0.0 else None
    loss, _, _ = minibatch_loss(logits, second, target, usable, gamma=options.focal_gamma, alpha=alpha, w=w,
                                normalization=options.loss_normalization)
    v.opt.zero_grad(set_to_none=True)
    loss.backward()
    v.opt.step()
    return loss.detach()


def _second(v: Variant, x: Tensor, device: torch.device, noise: dict[str, object],
            ctx: Callable[[], contextlib.AbstractContextManager[object]]) -> Tensor:
    with ctx():
        return stochastic_pass(v.model, x, device, noise)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``fn()``: on a shared machine the CPU
    time is the steadier figure (OpenMP spin-waits count in it too)."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.split("load average:")[-1].strip()
    except OSError:
        return "?"


def bench(name: str, args: argparse.Namespace, options: TrainOptions) -> None:
    b, t, c, p, hidden = SHAPES[name]
    b = args.batch or b
    x, target, usable = make_batch(b, t, c, p)
    alpha = balanced_alpha(torch.bincount(target[target >= 0], minlength=K))
    variants = make_models(c, hidden, ["ours", "reference", *args.variants], options.lr)
    w = 0.0 if args.supervised else options.consistency_weight * LABELLED
    print(f"[{name}] B={b} t={t} C={c} patch={p}x{p} hidden={hidden} K={K} consistency w={w:g} "
          f"repeats={args.repeats} warmup={args.warmup} | load average {load()}", flush=True)
    for _ in range(args.warmup):
        for v in variants.values():
            train_step(v, x, target, usable, w=w, alpha=alpha, options=options)
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):  # interleaved: every variant sees the same machine load
        for key, v in variants.items():
            wall, used = timed(lambda v=v: train_step(v, x, target, usable, w=w, alpha=alpha, options=options))
            times[key].append(wall)
            cpu[key].append(used)
            if args.verbose:
                print(f"    {key}: {wall:.2f} s wall, {used:.2f} s CPU (load average {load()})", flush=True)
    ref_t, ref_c = statistics.median(times["reference"]), statistics.median(cpu["reference"])
    for key, ts in times.items():
        m, mc = statistics.median(ts), statistics.median(cpu[key])
        print(f"  {key:20s} {m:8.3f} s/step {b / m:7.3f} windows/s x{ref_t / m:.2f} | CPU {mc:7.2f} s/step "
              f"x{ref_c / mc:.2f} vs reference (wall {', '.join(f'{s:.1f}' for s in ts)})", flush=True)
    print(f"  load average after: {load()}", flush=True)
    if args.check:
        xc, tc, uc = make_batch(args.check_batch, t, c, p, seed=1)
        check(name, args, options, xc, tc, uc, balanced_alpha(torch.bincount(tc[tc >= 0], minlength=K)), w)


def check(name: str, args: argparse.Namespace, options: TrainOptions, x: Tensor, target: Tensor, usable: Tensor,
          alpha: Tensor, w: float) -> None:
    """Loss trajectory of ``args.check`` steps per variant from the same weights, data and seed."""
    _, _, c, _, hidden = SHAPES[name]
    variants = make_models(c, hidden, ["ours", *args.variants], options.lr)
    losses: dict[str, list[float]] = {}
    for key, v in variants.items():
        torch.manual_seed(1)
        losses[key] = [float(train_step(v, x, target, usable, w=w, alpha=alpha, options=options))
                       for _ in range(args.check)]
    base = torch.tensor(losses["ours"])
    print(f"  loss trajectory over {args.check} steps of B={x.shape[0]} (same init, data, seed); ours float32: "
          f"{', '.join(f'{v:.4f}' for v in base.tolist())}")
    for key, ls in losses.items():
        if key == "ours":
            continue
        rel = ((torch.tensor(ls) - base).abs() / base.abs()).max()
        print(f"  {key:26s} max relative difference {float(rel):.2e}  last {ls[-1]:.4f} vs {base[-1]:.4f}: "
              f"{', '.join(f'{v:.4f}' for v in ls)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", choices=[*SHAPES, "all"], default="demo")
    parser.add_argument("--batch", type=int, default=None, help="override the windows per step")
    parser.add_argument("--variants", nargs="*", default=[],
                        choices=["channels_last", "bf16", "channels_last_bf16", "joint"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--check", type=int, default=0, help="steps of the loss-trajectory check (0 = none)")
    parser.add_argument("--check-batch", type=int, default=1, help="windows per step of the check")
    parser.add_argument("--supervised", action="store_true", help="w = 0: no second pass (first epoch, convlstm)")
    parser.add_argument("--verbose", action="store_true", help="print every timed step")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    options = TrainOptions(classes=())
    print(f"machine: {machine()} | torch {torch.__version__} threads {torch.get_num_threads()} | "
          f"mkldnn bf16 {torch.backends.mkldnn.is_available()}", flush=True)
    for name in (SHAPES if args.shapes == "all" else [args.shapes]):
        bench(name, args, options)


if __name__ == "__main__":
    main()
