"""Loss of eq. (3): focal cross-entropy, consistency term, ramp-up, class balancing, perturbation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.training.augment import perturb
from pipeline.training.losses import (
    balanced_alpha,
    consistency_loss,
    focal_loss,
    focal_loss_sum,
    rampup_weight,
)


def test_focal_equals_cross_entropy_for_gamma_0_uniform_alpha() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 5, 6, generator=g)
    target = torch.randint(0, 4, (3, 5, 6), generator=g)
    target[0, 0, :3] = -1
    expected = F.cross_entropy(logits, target, ignore_index=-1)
    torch.testing.assert_close(focal_loss(logits, target, gamma=0.0, alpha=None), expected)
    torch.testing.assert_close(focal_loss(logits, target, gamma=0.0, alpha=torch.ones(4)), expected)


def test_focal_hand_computed_tiny_case() -> None:
    # Two labelled pixels, one unlabelled; K = 2, gamma = 2, alpha = (0.25, 0.75).
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [9.0, -9.0]])
    target = torch.tensor([0, 0, -1])
    p0 = math.exp(2) / (math.exp(2) + 1)  # p of class 0 for pixel 0
    p1 = 1 / (1 + math.e)  # p of class 0 for pixel 1
    terms = [-0.25 * (1 - p0) ** 2 * math.log(p0), -0.25 * (1 - p1) ** 2 * math.log(p1)]
    alpha = torch.tensor([0.25, 0.75])
    total, count = focal_loss_sum(logits, target, gamma=2.0, alpha=alpha)
    assert count.item() == 2
    assert total.item() == pytest.approx(sum(terms), rel=1e-6)
    assert focal_loss(logits, target, gamma=2.0, alpha=alpha).item() == pytest.approx(sum(terms) / 2, rel=1e-6)
    # Paper's |B| normalisation: divide by all pixels of the minibatch (here 3).
    assert focal_loss(logits, target, gamma=2.0, alpha=alpha, normalizer=3).item() == pytest.approx(sum(terms) / 3, rel=1e-6)
    # Class 1 target uses alpha 0.75.
    t1 = focal_loss(logits[1:2], torch.tensor([1]), gamma=2.0, alpha=alpha).item()
    q = math.e / (1 + math.e)
    assert t1 == pytest.approx(-0.75 * (1 - q) ** 2 * math.log(q), rel=1e-6)


def test_focal_down_weights_easy_pixels_and_ignores_unlabelled() -> None:
    logits = torch.tensor([[5.0, 0.0], [0.2, 0.0]])
    target = torch.tensor([0, 0])
    ce = F.cross_entropy(logits, target, reduction="none")
    fl, _ = focal_loss_sum(logits[:1], target[:1], gamma=2.0)
    assert fl.item() < 0.01 * ce[0].item()  # easy pixel nearly vanishes
    no_label = focal_loss(logits, torch.tensor([-1, -1]), gamma=2.0)
    assert no_label.item() == 0.0


def test_consistency_zero_for_identical_and_hand_value() -> None:
    p = torch.softmax(torch.randn(2, 3, 4, 4), dim=1)
    assert consistency_loss(p, p.clone()).item() == 0.0
    a = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    b = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    # sum ||a_i - b_i||^2 = 2 + 0, K = 2, |B| = 2 -> 0.5
    assert consistency_loss(a, b).item() == pytest.approx(0.5)
    # Masking out the second pixel: |B| = 1 -> 1.0; masking the first -> 0.
    assert consistency_loss(a, b, torch.tensor([True, False])).item() == pytest.approx(1.0)
    assert consistency_loss(a, b, torch.tensor([False, True])).item() == 0.0


def test_rampup_values() -> None:
    assert rampup_weight(0, w_max=10.0, rampup_epochs=10) == 0.0
    assert rampup_weight(5, w_max=10.0, rampup_epochs=10) == pytest.approx(10.0 * math.exp(-1.25))
    assert rampup_weight(1, w_max=10.0, rampup_epochs=10) == pytest.approx(10.0 * math.exp(-5 * 0.81))
    assert rampup_weight(10, w_max=10.0, rampup_epochs=10) == 10.0
    assert rampup_weight(25, w_max=10.0, rampup_epochs=10) == 10.0
    assert rampup_weight(0, w_max=3.0, rampup_epochs=0) == 3.0
    assert rampup_weight(7, w_max=0.0, rampup_epochs=10) == 0.0
    values = [rampup_weight(e, w_max=1.0, rampup_epochs=10) for e in range(12)]
    assert values == sorted(values)


def test_balanced_alpha() -> None:
    alpha = balanced_alpha(torch.tensor([10, 30, 0]))
    torch.testing.assert_close(alpha, torch.tensor([2.0, 2.0 / 3.0, 0.0]))
    # Average weight over the training pixels is 1 (like sklearn's 'balanced').
    assert (alpha[0] * 10 + alpha[1] * 30).item() / 40 == pytest.approx(1.0)


def test_perturb_jitter_noise_and_last_step() -> None:
    torch.manual_seed(0)
    n, t = 64, 6
    x = torch.arange(t, dtype=torch.float32).view(1, t, 1, 1, 1).expand(n, t, 2, 3, 3).clone()
    same = perturb(x, noise_std=0.0, jitter=0.0)
    assert torch.equal(same, x)
    j = perturb(x, noise_std=0.0, jitter=0.9)
    steps = j[:, :, 0, 0, 0]
    assert torch.equal(steps[:, -1], x[:, -1, 0, 0, 0])  # labelled date never moves
    assert torch.equal(steps[:, 0], x[:, 0, 0, 0, 0])
    delta = x[:, :, 0, 0, 0] - steps
    assert set(delta.unique().tolist()) == {0.0, 1.0}  # each step is itself or its predecessor
    assert (delta[:, 1:-1] == 1).float().mean() > 0.7
    std = torch.tensor([1.0, 10.0])
    noisy = perturb(torch.zeros(200, 3, 2, 8, 8), noise_std=0.1, jitter=0.0, channel_std=std)
    assert noisy[:, :, 0].std().item() == pytest.approx(0.1, rel=0.05)
    assert noisy[:, :, 1].std().item() == pytest.approx(1.0, rel=0.05)
    nan = torch.full((1, 3, 2, 2, 2), float("nan"))
    assert torch.isnan(perturb(nan, noise_std=0.1, jitter=0.5)).all()


@pytest.mark.parametrize("jitter", [0.0, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_perturb_leaves_its_input_alone(jitter: float, dtype: torch.dtype) -> None:
    """perturb works in place on its own copy: the batch's windows stay as they were, so the
    second stochastic pass perturbs the same windows as the first; the result is float32."""
    torch.manual_seed(1)
    x = torch.randn(3, 5, 2, 4, 4).to(dtype)
    before = x.clone()
    out = perturb(x, noise_std=0.1, jitter=jitter, channel_std=torch.tensor([1.0, 2.0]))
    assert torch.equal(x, before) and out.dtype == torch.float32 and out.data_ptr() != x.data_ptr()
    torch.manual_seed(2)
    scalar = perturb(x, noise_std=0.1, jitter=jitter)
    assert torch.equal(x, before)
    torch.manual_seed(2)  # the same draws, computed out of place: x[jittered] + 0.1 * noise
    if jitter > 0:
        move = torch.rand(3, 5) < jitter
        move[:, 0] = move[:, -1] = False
        idx = torch.arange(5).expand(3, 5) - move.long()
        shifted = before[torch.arange(3)[:, None], idx].float()
    else:
        shifted = before.float()
    expected = shifted + torch.randn(x.shape) * 0.1
    torch.testing.assert_close(scalar, expected, atol=1e-6, rtol=1e-6)
