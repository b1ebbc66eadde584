"""Minibatches of windows gathered from in-memory tensors (patch windows or pixel windows)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class Batch:
    """``x``: (N, t, C, *S) float32 features, NaN where missing; ``target``: (N, *S) int64
    class indices, -1 = unlabelled/ignored; ``usable``: (N, *S) bool, pixels with data.
    ``*S`` is (ph, pw) for patch windows and empty for pixel windows."""

    x: Tensor
    target: Tensor
    usable: Tensor

    def to(self, device: torch.device) -> Batch:
        return Batch(self.x.to(device, non_blocking=True), self.target.to(device, non_blocking=True),
                     self.usable.to(device, non_blocking=True))


class WindowSource:
    """Windows over ``features`` (T, C, H, W) float16, ``labels`` (T, H, W) int16 and
    ``usable`` (T, H, W) bool tensors (all on one device).

    ``windows``: (N, 3) (end, y, x) or (N, 4) with the patch origin index last. ``patch``
    (ph, pw): (y, x) is a patch corner; None: (y, x) is a pixel. ``owned`` (M, ph, pw) bool,
    indexed by the origin index, restricts the scored pixels (validation de-duplication).
    ``labelled`` (N,) bool: windows holding at least one label (default: all), which
    :func:`epoch_order` draws separately from the unlabelled ones.
    """

    def __init__(
        self, features: Tensor, labels: Tensor, usable: Tensor, windows: np.ndarray, *, time_steps: int,
        patch: tuple[int, int] | None, owned: Tensor | None = None, labelled: np.ndarray | None = None,
    ) -> None:
        self.features, self.labels, self.usable = features, labels, usable
        self.windows = torch.as_tensor(windows, dtype=torch.int64)
        self.t = time_steps
        self.patch = patch
        self.owned = owned
        n = int(self.windows.shape[0])
        self.labelled = torch.ones(n, dtype=torch.bool) if labelled is None else torch.as_tensor(labelled, dtype=torch.bool)
        if self.labelled.shape != (n,):
            raise ValueError(f"labelled has shape {tuple(self.labelled.shape)}, expected ({n},)")
        self._counts: Tensor | None = None

    def __len__(self) -> int:
        return int(self.windows.shape[0])

    def pixel_counts(self) -> Tensor:
        """(N, 2) int64 on the CPU: per window, the labelled pixels (target >= 0) and the pixels
        with data (usable) that :meth:`batch` returns for it. Computed once and cached."""
        if self._counts is None:
            if self.patch is None:
                target, usable = self._targets(self.windows)
                counts = torch.stack([(target >= 0).long(), usable.long()], 1)
            else:
                counts = torch.tensor([[int((t >= 0).sum()), int(u.sum())]
                                       for t, u in (self._patch_target(row) for row in self.windows.tolist())],
                                      dtype=torch.int64).reshape(-1, 2)
            self._counts = counts.cpu()
        return self._counts

    def _targets(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """Targets (n,) int64 and usable (n,) bool of pixel windows ``w`` (n, 3)."""
        ends, ys, xs = (w[:, i].to(self.labels.device) for i in range(3))
        return self.labels[ends, ys, xs].long(), self.usable[ends, ys, xs]

    def _patch_target(self, row: list[int]) -> tuple[Tensor, Tensor]:
        """Targets (ph, pw) int64 (-1 outside ``owned``) and usable (ph, pw) bool of the patch
        window ``row`` (end, y, x[, origin index]) at its end date."""
        ph, pw = self.patch  # type: ignore[misc]
        e, y, x0 = row[:3]
        target = self.labels[e, y : y + ph, x0 : x0 + pw].long()
        usable = self.usable[e, y : y + ph, x0 : x0 + pw]
        if self.owned is not None:
            own = self.owned[row[3]]
            target = torch.where(own, target, torch.full_like(target, -1))
            usable = usable & own
        return target, usable

    def batch(self, idx: Tensor) -> Batch:
        """Gather the windows ``idx`` (n,) int64 into a :class:`Batch`."""
        w = self.windows[idx]
        if self.patch is None:
            dev = self.features.device
            ends, ys, xs = (w[:, i].to(dev) for i in range(3))
            tt = ends[:, None] + torch.arange(-self.t + 1, 1, device=dev)[None, :]
            x = self.features[tt, :, ys[:, None], xs[:, None]].float()  # (n, t, C)
            return Batch(x, *self._targets(w))
        ph, pw = self.patch
        xs_, ts_, us_ = [], [], []
        for row in w.tolist():
            e, y, x0 = row[:3]
            xs_.append(self.features[e - self.t + 1 : e + 1, :, y : y + ph, x0 : x0 + pw])
            target, usable = self._patch_target(row)
            ts_.append(target)
            us_.append(usable)
        return Batch(torch.stack(xs_).float(), torch.stack(ts_), torch.stack(us_))


def epoch_order(labelled: Tensor, *, budget: int | None, unlabelled_ratio: float,
                generator: torch.Generator) -> Tensor:
    """Window indices (n,) int64 to visit in one epoch, shuffled with ``generator``.

    ``labelled`` (N,) bool marks windows holding a training label. ``budget`` None: every
    window. Otherwise at most ``budget`` labelled windows plus ``round(unlabelled_ratio *
    n_labelled_drawn)`` unlabelled ones (only where the source has some: the semi-supervised
    model), so every model sees the same number of labelled windows per epoch whatever the
    share of unlabelled windows in its source. A source of labelled windows only gives
    ``randperm(N)[:budget]``.
    """
    n = int(labelled.shape[0])
    if budget is None or bool(labelled.all()):
        order = torch.randperm(n, generator=generator)
        return order if budget is None else order[:budget]
    lab = torch.nonzero(labelled).flatten()
    unl = torch.nonzero(~labelled).flatten()
    lab = lab[torch.randperm(lab.numel(), generator=generator)[:budget]]
    n_unl = min(unl.numel(), round(unlabelled_ratio * lab.numel()))
    unl = unl[torch.randperm(unl.numel(), generator=generator)[:n_unl]]
    both = torch.cat([lab, unl])
    return both[torch.randperm(both.numel(), generator=generator)]
