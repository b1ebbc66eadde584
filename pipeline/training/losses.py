"""Loss of the paper's eq. (3): focal-modulated, class-balanced cross-entropy on labelled
pixels + ramped-up consistency between two stochastic passes (Pi-model, Laine & Aila 2017).

    L = -sigma/|B| * sum_{i in B n L} (1 - p_i)^gamma log p_i
        + w(e) * 1/(K |B|) * sum_{i in B} || y^_i - y^'_i ||^2

``p_i`` is the softmax probability of the reference class of pixel i, ``sigma`` the per-class
balancing factor (alpha), ``K`` the number of classes, ``|B|`` the pixels of the minibatch,
``w(e)`` the Gaussian ramp-up. With ``consistency_scaling: labelled_share`` (default) the loop
multiplies ``w(e)`` by the share of labelled pixels among the pixels with data in the epoch's
windows, the ``w_max * M/N`` of the Pi-model's reference implementation (s-laine/tempens), so
that the consistency term keeps the weight relative to the supervised term that it has with
densely labelled inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -1


def focal_loss_sum(
    logits: Tensor, target: Tensor, *, gamma: float = 2.0, alpha: Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[Tensor, Tensor]:
    """Sum over labelled pixels of ``-alpha_y (1 - p_y)^gamma log p_y`` and their count.

    ``logits``: (N, K, *spatial) float (computed in float32); ``target``: (N, *spatial) int64
    class indices 0..K-1, ``ignore_index`` where unlabelled/masked; ``alpha``: (K,) per-class
    weights or None (all 1). Returns (loss sum, number of labelled pixels), both 0-dim.
    """
    logp = F.log_softmax(logits.float(), dim=1)
    labelled = target != ignore_index
    safe = torch.where(labelled, target, torch.zeros_like(target))
    logp_t = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    term = -logp_t
    if gamma != 0.0:
        term = term * (1.0 - logp_t.exp()).clamp_min(0.0).pow(gamma)
    if alpha is not None:
        term = term * alpha.to(term)[safe]
    term = torch.where(labelled, term, torch.zeros_like(term))
    return term.sum(), labelled.sum()


def focal_loss(
    logits: Tensor, target: Tensor, *, gamma: float = 2.0, alpha: Tensor | None = None,
    normalizer: Tensor | float | None = None, ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """Supervised term of eq. (3): :func:`focal_loss_sum` divided by ``normalizer``.

    ``normalizer`` None divides by the number of labelled pixels (so gamma = 0 and alpha = None
    give ``F.cross_entropy(..., ignore_index=...)``); pass |B| (pixels with data in the
    minibatch) for the paper's form. A minibatch without labels gives 0 (with a graph).
    """
    total, count = focal_loss_sum(logits, target, gamma=gamma, alpha=alpha, ignore_index=ignore_index)
    denom = count if normalizer is None else torch.as_tensor(normalizer, device=total.device)
    return total / denom.clamp_min(1)


def consistency_loss(probs_a: Tensor, probs_b: Tensor, mask: Tensor | None = None, *,
                     count: Tensor | None = None) -> Tensor:
    """Unsupervised term of eq. (3): ``1/(K |B|) sum_{i in B} ||a_i - b_i||^2``.

    ``probs_a``/``probs_b``: softmax outputs (N, K, *spatial) of two stochastic passes;
    ``mask``: (N, *spatial) bool, pixels that count (those with data), None = all.
    ``count``: |B| when the minibatch is larger than these pixels (DDP: the pixels of the
    global batch); default ``mask.sum()``.
    """
    sq = (probs_a.float() - probs_b.float()).pow(2).sum(dim=1)
    k = probs_a.shape[1]
    if mask is None:
        return sq.sum() / (k * (sq.numel() if count is None else count.clamp_min(1)))
    sq = torch.where(mask, sq, torch.zeros_like(sq))
    return sq.sum() / (k * (mask.sum() if count is None else count).clamp_min(1))


def minibatch_loss(
    logits: Tensor, second_pass: Callable[[], Tensor] | None, target: Tensor, usable: Tensor, *, gamma: float,
    alpha: Tensor | None, w: float, normalization: Literal["batch", "labelled"],
    global_counts: Tensor | None = None, world_size: int = 1,
) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. (3) on one minibatch: (loss, supervised term, consistency term), 0-dim float32.

    ``logits``: (N, K, *spatial) of the first stochastic pass; ``second_pass``: runs the
    second pass (called after the supervised term is built, keeping the order of the
    operations, hence the float rounding, of the loop) or None when ``w`` = 0 (no consistency
    term); ``target`` (N, *spatial) int64, -1 = unlabelled; ``usable`` (N, *spatial) bool,
    pixels with data; ``normalization``: the supervised sum is divided by the usable
    ("batch", |B|) or by the labelled pixels.

    Data-parallel training: this process holds a share of the global batch;
    ``global_counts`` (2,) = (labelled, usable) pixels of the *global* batch and ``world_size``
    the number of processes. Both terms are normalized by the global counts and multiplied by
    ``world_size``, so DDP's gradient average over the processes equals the gradient of the
    whole batch in one process, and the mean of the returned terms over the processes is the
    whole batch's value.
    """
    if global_counts is None:
        norm = usable.sum() if normalization == "batch" else None
        n_usable = None
    else:
        n_usable = global_counts[1]
        norm = n_usable if normalization == "batch" else global_counts[0]
    sup = focal_loss(logits, target, gamma=gamma, alpha=alpha, normalizer=norm)
    cons = torch.zeros((), device=logits.device)
    if second_pass is not None:
        logits2 = second_pass()
        cons = consistency_loss(logits.float().softmax(1), logits2.float().softmax(1), usable, count=n_usable)
    if world_size != 1:
        sup, cons = sup * world_size, cons * world_size
    return sup + w * cons, sup, cons


def rampup_weight(epoch: float, *, w_max: float, rampup_epochs: int) -> float:
    """Gaussian ramp-up ``w_max * exp(-5 (1 - T)^2)``, ``T = epoch / rampup_epochs`` in [0, 1].

    ``epoch`` is the 0-based epoch being trained; w(0) = 0 as in the paper (the consistency
    term is off in the first epoch), w = w_max from ``rampup_epochs`` on.
    """
    if w_max == 0.0:
        return 0.0
    if rampup_epochs <= 0:
        return float(w_max)
    if epoch <= 0:
        return 0.0
    t = min(float(epoch) / rampup_epochs, 1.0)
    return float(w_max * math.exp(-5.0 * (1.0 - t) ** 2))


def balanced_alpha(counts: Tensor) -> Tensor:
    """sklearn-style 'balanced' weights ``n / (K_present * n_k)``; 0 for absent classes.

    ``counts``: (K,) labelled pixels per class in the training split. The weights average 1
    over the training pixels.
    """
    counts = counts.double()
    present = counts > 0
    n = counts.sum()
    k = present.sum().clamp_min(1)
    alpha = torch.where(present, n / (k * counts.clamp_min(1)), torch.zeros_like(counts))
    return alpha.float()
