"""Stochastic input perturbations for the two passes of the consistency term.

The paper's "random sequential variation": each pass sees the same window with independent
Gaussian noise and a random temporal jitter (a step replaced by its predecessor), on top of
dropout inside the model. Random numbers come from torch's global generator on the tensor's
device, whose state is saved in checkpoints.
"""

from __future__ import annotations

import torch
from torch import Tensor


def perturb(x: Tensor, *, noise_std: float, jitter: float, channel_std: Tensor | None = None) -> Tensor:
    """Return a perturbed copy of windows ``x`` (N, T, C, *spatial), float, NaN where missing.

    ``noise_std``: Gaussian noise std in units of ``channel_std`` (C,) (1 if None);
    ``jitter``: per sample and step, probability that step t (0 < t < T-1) is replaced by step
    t-1 (the last step, the labelled date, is never moved). NaN stays NaN.
    """
    n, t = x.shape[0], x.shape[1]
    if jitter > 0.0 and t > 2:
        move = torch.rand(n, t, device=x.device) < jitter
        move[:, 0] = False
        move[:, -1] = False
        idx = torch.arange(t, device=x.device).expand(n, t) - move.long()
        x = x[torch.arange(n, device=x.device)[:, None], idx]  # a copy: the steps below may work in place
    elif noise_std > 0.0:
        x = x.to(torch.float32, copy=True)
    if noise_std > 0.0:
        # in place on the copy: the windows are large (B x T x C x H x W), each temporary costs
        # as much as the noise itself (bench/README.md, "Training")
        x = x.float()
        noise = torch.randn(x.shape, device=x.device, dtype=torch.float32)
        if channel_std is None:
            x.add_(noise, alpha=noise_std)
        else:
            shape = [1] * x.dim()
            shape[2] = -1
            x.addcmul_(noise, channel_std.to(x.device, torch.float32).view(shape), value=noise_std)
    return x
