"""Forward+backward throughput of the package's ConvLSTM vs the common reference pattern.

Ours (pipeline.models.convlstm.ConvLSTMCell): the input-to-state convolution outside the
recurrence, either for all time steps in one batched convolution (the CUDA default) or one step
per call (``time_chunk=1``, the CPU default); only the state-to-state convolution inside the
recurrence, none at step 0; no gradient w.r.t. the input channels.
Reference: concatenate X_t and H_{t-1} and run one (C+hidden -> 4*hidden) convolution per step.
Both have the same weights (checked equal before timing) and the same peephole pointwise math.

Figure: pixel-steps per second = B * t * H * W / (seconds per forward+backward), median of
``--repeats`` runs, ours and the reference interleaved so both see the same machine load.

    python bench/bench_convlstm.py                 # demo shapes (short)
    python bench/bench_convlstm.py --shapes paper  # t=20, hidden 128, 128x128 (long on CPU)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from torch import Tensor, nn

from pipeline.models.convlstm import ConvLSTMCell

SHAPES = {  # name: (B, t, C, H, W, hidden)
    "demo": (4, 6, 71, 64, 64, 32),
    "paper": (2, 20, 71, 128, 128, 128),
}


class ReferenceConvLSTM(nn.Module):
    """Concatenate-then-convolve ConvLSTM (one conv per step), weights taken from ``cell``."""

    def __init__(self, cell: ConvLSTMCell) -> None:
        super().__init__()
        self.hidden = cell.hidden
        k = cell.input_conv.kernel_size[0]
        self.conv = nn.Conv2d(cell.in_channels + cell.hidden, 4 * cell.hidden, k, padding=k // 2)
        assert cell.peephole is not None
        self.peephole = nn.Parameter(cell.peephole.detach().clone())
        with torch.no_grad():
            self.conv.weight.copy_(torch.cat([cell.input_conv.weight, cell.state_conv.weight], dim=1))
            self.conv.bias.copy_(cell.input_conv.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, t, _, h, w = x.shape
        hid = x.new_zeros(b, self.hidden, h, w)
        s = x.new_zeros(b, self.hidden, h, w)
        for i in range(t):
            g4 = self.conv(torch.cat([x[:, i], hid], dim=1)).unflatten(1, (4, self.hidden))
            ifo = torch.sigmoid(g4[:, :3] + self.peephole * s.unsqueeze(1))
            i_g, f_g, o_g = ifo.unbind(1)
            s = f_g * s + i_g * torch.tanh(g4[:, 3])
            hid = o_g * torch.tanh(s)
        return hid, s


def _step(model: nn.Module, x: Tensor, device: torch.device, **kwargs: object) -> float:
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        h, _ = model(x, **kwargs)
    h.float().square().mean().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run(name: str, *, repeats: int, device: torch.device) -> None:
    b, t, c, h, w, hidden = SHAPES[name]
    torch.manual_seed(0)
    ours = ConvLSTMCell(c, hidden).to(device)
    with torch.no_grad():
        assert ours.peephole is not None
        ours.peephole.normal_(0, 0.1)
    ref = ReferenceConvLSTM(ours).to(device)
    if device.type == "cuda":
        ours = ours.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        ref = ref.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = torch.randn(b, t, c, h, w, device=device)
    with torch.no_grad():
        torch.testing.assert_close(ours(x[:1, :3])[0], ref(x[:1, :3])[0], atol=1e-3, rtol=1e-3)
    variants: dict[str, tuple[nn.Module, dict[str, object]]] = {
        "ours, input conv of all steps batched": (ours, {"time_chunk": t}),
        "ours, input conv per step (time_chunk=1)": (ours, {"time_chunk": 1}),
        "reference, concat + one conv per step": (ref, {}),
    }
    for model, kw in variants.values():  # warm-up
        _step(model, x, device, **kw)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):  # interleaved: every variant sees the same machine load
        for key, (model, kw) in variants.items():
            times[key].append(_step(model, x, device, **kw))
    px = b * t * h * w
    ref_t = statistics.median(times["reference, concat + one conv per step"])
    print(f"[{name}] B={b} t={t} C={c} {h}x{w} hidden={hidden} repeats={repeats} (median ms per forward+backward)")
    for key, ts in times.items():
        m = statistics.median(ts)
        print(f"  {key:42s} {m * 1e3:9.1f} ms  {px / m:12.0f} pixel-steps/s  x{ref_t / m:.2f} vs reference")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", choices=[*SHAPES, "all"], default="demo")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else "-"
    print(f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | cpus {os.cpu_count()} | "
          f"torch {torch.__version__} threads {torch.get_num_threads()} | device {device} {gpu}")
    for name in (SHAPES if args.shapes == "all" else [args.shapes]):
        run(name, repeats=args.repeats, device=device)


if __name__ == "__main__":
    main()
