"""ConvLSTM cell (paper eq. (2)) and classifiers against independent computations."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.models.convlstm import ConvLSTMCell, ConvLSTMClassifier, ConvLSTMConfig
from pipeline.models.pixel_lstm import PixelLSTMClassifier, PixelLSTMConfig


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _eq2_direct(cell: ConvLSTMCell, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (2) written out gate by gate, one convolution per term and step, H_0 = S_0 = 0."""
    n = cell.hidden
    wx, b, wh = cell.input_conv.weight, cell.input_conv.bias, cell.state_conv.weight
    assert cell.peephole is not None
    w_is, w_fs, w_os = cell.peephole[0], cell.peephole[1], cell.peephole[2]
    pad = wx.shape[-1] // 2

    def conv(inp: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(inp, w, padding=pad)

    bsz, steps, _, height, width = x.shape
    h = torch.zeros(bsz, n, height, width)
    s = torch.zeros(bsz, n, height, width)
    sl = {g: slice(k * n, (k + 1) * n) for k, g in enumerate("ifoS")}
    for t in range(steps):
        xt = x[:, t]
        i = torch.sigmoid(conv(xt, wx[sl["i"]]) + conv(h, wh[sl["i"]]) + w_is * s + b[sl["i"]].view(1, -1, 1, 1))
        f = torch.sigmoid(conv(xt, wx[sl["f"]]) + conv(h, wh[sl["f"]]) + w_fs * s + b[sl["f"]].view(1, -1, 1, 1))
        o = torch.sigmoid(conv(xt, wx[sl["o"]]) + conv(h, wh[sl["o"]]) + w_os * s + b[sl["o"]].view(1, -1, 1, 1))
        s_hat = torch.tanh(conv(xt, wx[sl["S"]]) + conv(h, wh[sl["S"]]) + b[sl["S"]].view(1, -1, 1, 1))
        s = f * s + i * s_hat
        h = o * torch.tanh(s)
    return h, s


def test_cell_matches_direct_equation_2() -> None:
    torch.manual_seed(0)
    cell = ConvLSTMCell(3, 4, kernel=3)
    _randomize(cell)
    assert cell.peephole is not None and cell.peephole.abs().sum() > 0
    x = torch.randn(2, 5, 3, 6, 7)
    h, s = cell(x)
    h_ref, s_ref = _eq2_direct(cell, x)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s, s_ref, atol=1e-5, rtol=1e-5)
    # The peepholes matter: zeroing them changes the result.
    with torch.no_grad():
        cell.peephole.zero_()
    assert not torch.allclose(cell(x)[0], h, atol=1e-4)


def test_batched_input_convolution_equals_per_step() -> None:
    torch.manual_seed(1)
    cell = ConvLSTMCell(5, 3, kernel=3)
    _randomize(cell, seed=1)
    x = torch.randn(3, 4, 5, 8, 8)
    gx = cell.input_gates(x)
    state = None
    for t in range(x.shape[1]):
        per_step = cell.input_conv(x[:, t])
        torch.testing.assert_close(gx[:, t], per_step, atol=1e-5, rtol=1e-5)
        state = cell.step(per_step, state)
    assert state is not None
    torch.testing.assert_close(cell(x)[0], state[0], atol=1e-6, rtol=1e-6)


def test_reference_concat_pattern_gives_same_outputs() -> None:
    """The bench's reference (concat input+hidden, one conv per step) computes the same thing."""
    torch.manual_seed(2)
    cell = ConvLSTMCell(4, 3)
    _randomize(cell, seed=2)
    w_cat = torch.cat([cell.input_conv.weight, cell.state_conv.weight], dim=1)
    x = torch.randn(2, 3, 4, 5, 5)
    h = torch.zeros(2, 3, 5, 5)
    s = torch.zeros_like(h)
    assert cell.peephole is not None
    for t in range(3):
        g = F.conv2d(torch.cat([x[:, t], h], 1), w_cat, cell.input_conv.bias, padding=1).unflatten(1, (4, 3))
        ifo = torch.sigmoid(g[:, :3] + cell.peephole * s.unsqueeze(1))
        s = ifo[:, 1] * s + ifo[:, 0] * torch.tanh(g[:, 3])
        h = ifo[:, 2] * torch.tanh(s)
    torch.testing.assert_close(cell(x)[0], h, atol=1e-5, rtol=1e-5)


def test_cell_gradients_match_finite_differences() -> None:
    torch.manual_seed(3)
    cell = ConvLSTMCell(2, 2).double()
    _randomize(cell, seed=3)
    x = torch.randn(1, 3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    peep = cell.peephole
    assert peep is not None
    # Gradients w.r.t. the input and the peephole weights (the custom parts of the cell).
    assert torch.autograd.gradcheck(
        lambda inp, w: torch.func.functional_call(cell, {"peephole": w}, (inp,))[0],
        (x, peep.detach().clone().requires_grad_(True)), eps=1e-6, atol=1e-5, fast_mode=True,
    )


def test_classifier_head_standardisation_and_nan_masking() -> None:
    torch.manual_seed(4)
    cfg = ConvLSTMConfig(in_channels=3, num_classes=4, hidden=5, dropout=0.5)
    model = ConvLSTMClassifier(cfg)
    _randomize(model, seed=4)
    mean, std = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 0.5, 1.0])
    model.standardize.set_statistics(mean, std)
    model.eval()
    x = torch.randn(2, 3, 3, 6, 6) * 2 + 1
    z = (x - mean.view(1, 1, 3, 1, 1)) / std.view(1, 1, 3, 1, 1)
    h, _ = model.cell(z)
    expected = F.conv2d(h, model.head.weight, model.head.bias)
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    # A missing observation (NaN, Inf) is the channel mean: same output as feeding the mean.
    x_nan, x_mean = x.clone(), x.clone()
    x_nan[0, 1, :, 2, 3] = float("nan")
    x_nan[1, 2, 0, 4, 4] = float("inf")
    x_mean[0, 1, :, 2, 3] = mean
    x_mean[1, 2, 0, 4, 4] = mean[0]
    out = model(x_nan)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, model(x_mean), atol=1e-5, rtol=1e-5)
    # The standardiser leaves its input alone and takes float16 features as float32.
    x_half = x_nan.half()
    kept = x_half.clone()
    z_half = model.standardize(x_half, channel_dim=2)
    assert torch.equal(x_half.isnan(), kept.isnan()) and torch.equal(x_half.nan_to_num(), kept.nan_to_num())
    ref = torch.nan_to_num((x_half.float() - mean.view(1, 1, 3, 1, 1)) / std.view(1, 1, 3, 1, 1),
                           nan=0.0, posinf=0.0, neginf=0.0)
    assert z_half.dtype == torch.float32
    torch.testing.assert_close(z_half, ref, atol=1e-5, rtol=1e-5)
    # Any patch size works (per-channel peepholes broadcast over space).
    assert model(torch.randn(1, 2, 3, 9, 13)).shape == (1, 4, 9, 13)
    # Dropout makes two training-mode passes differ, eval passes agree.
    model.train()
    assert not torch.allclose(model(x), model(x))


def test_pixel_lstm_image_windows_equal_pixel_sequences() -> None:
    torch.manual_seed(5)
    model = PixelLSTMClassifier(PixelLSTMConfig(in_channels=3, num_classes=2, hidden=6), chunk_pixels=7)
    model.eval()
    x = torch.randn(2, 4, 3, 3, 5)
    img = model(x)
    for b, yy, xx in [(0, 0, 0), (1, 2, 4), (0, 1, 3)]:
        seq = x[b, :, :, yy, xx].unsqueeze(0)  # (1, T, C)
        z = seq  # standardiser is identity with default statistics
        out, (h, _) = model.lstm(z)
        torch.testing.assert_close(img[b, :, yy, xx], model.head(h[-1])[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[:, -1], h[-1])
