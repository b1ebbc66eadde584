"""ConvLSTM with peepholes (paper eq. (2), Shi et al. 2015) and the many-to-one classifier.

Eq. (2) of the paper, with ``*`` a 2-D convolution and ``.`` the Hadamard product::

    i_t = sigmoid(W_iX * X_t + W_iH * H_{t-1} + W_iS . S_{t-1} + b_i)
    f_t = sigmoid(W_fX * X_t + W_fH * H_{t-1} + W_fS . S_{t-1} + b_f)
    o_t = sigmoid(W_oX * X_t + W_oH * H_{t-1} + W_oS . S_{t-1} + b_o)
    S^_t = tanh(W_SX * X_t + W_SH * H_{t-1} + b_S)
    S_t = f_t . S_{t-1} + i_t . S^_t
    H_t = o_t . tanh(S_t)

Choices (documented because the paper leaves them open):

* The output gate's peephole reads ``S_{t-1}`` as printed in the paper (Shi et al. use
  ``S_t``).
* Peephole weights ``W_*S`` are one weight per hidden channel broadcast over space (shape
  (3, hidden, 1, 1)), not one per pixel: the model then works on any patch size and stays
  translation-equivariant, like the convolutional terms.
* Efficiency: the input-to-state convolutions ``W_*X * X_t`` do not depend on the recurrence,
  so they are computed apart from it: on CUDA for all time steps in ONE convolution (time
  stacked into the batch), on CPU one step at a time (faster there, cache-friendly); only the
  state-to-state convolution ``W_*H * H_{t-1}`` is inside the recurrence, and it is skipped at
  the first step where ``H_0 = S_0 = 0``. The common reference pattern (concatenate ``X_t``
  and ``H_{t-1}``, one convolution per step) also back-propagates into the C input channels
  at every step, which this one never does (see ``bench/bench_convlstm.py``).
* Gate order in the 4*hidden convolution outputs: i, f, o, S^.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from pipeline.models.standardize import InputStandardizer

State = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class ConvLSTMConfig:
    """Arguments of :class:`ConvLSTMClassifier` (saved with the weights).

    ``in_channels``: feature channels C; ``num_classes``: K outputs (class table order);
    ``hidden``: ConvLSTM hidden units (paper: 128); ``kernel``: odd convolution size (paper: 3);
    ``dropout``: dropout probability on the last hidden state; ``peephole``: use ``W_*S``.
    """

    in_channels: int
    num_classes: int
    hidden: int = 128
    kernel: int = 3
    dropout: float = 0.0
    peephole: bool = True

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer of eq. (2) run over a whole sequence.

    ``input_conv`` holds ``W_*X`` and the biases ``b_*`` (C -> 4*hidden), ``state_conv`` holds
    ``W_*H`` (hidden -> 4*hidden, no bias), ``peephole`` holds ``W_iS, W_fS, W_oS``.
    """

    def __init__(self, in_channels: int, hidden: int, *, kernel: int = 3, peephole: bool = True) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd to keep the grid, got {kernel}")
        self.in_channels = in_channels
        self.hidden = hidden
        pad = kernel // 2
        self.input_conv = nn.Conv2d(in_channels, 4 * hidden, kernel, padding=pad, bias=True)
        self.state_conv = nn.Conv2d(hidden, 4 * hidden, kernel, padding=pad, bias=False)
        self.peephole = nn.Parameter(torch.zeros(3, hidden, 1, 1)) if peephole else None
        with torch.no_grad():  # forget-gate bias 1: remember by default (Jozefowicz et al.)
            self.input_conv.bias[hidden : 2 * hidden].fill_(1.0)

    def input_gates(self, x: Tensor) -> Tensor:
        """``W_*X * X_t + b_*`` for every step at once.

        ``x``: (B, T, C, H, W) float; returns (B, T, 4*hidden, H, W) (gate order i, f, o, S^).
        """
        b, t, c, h, w = x.shape
        x4 = x.reshape(b * t, c, h, w)
        if x4.is_cuda:
            x4 = x4.contiguous(memory_format=torch.channels_last)
        g = self.input_conv(x4)
        return g.reshape(b, t, 4 * self.hidden, h, w)

    def step(self, gx_t: Tensor, state: State | None) -> State:
        """One recurrence step given the precomputed input term ``gx_t`` (B, 4*hidden, H, W).

        ``state`` is ``(H_{t-1}, S_{t-1})`` each (B, hidden, H, W), or None for zeros.
        Returns ``(H_t, S_t)``.
        """
        if state is None:  # H_0 = S_0 = 0: no state convolution, no peephole, no forget term
            g4 = gx_t.unflatten(1, (4, self.hidden))
            i, _, o = torch.sigmoid(g4[:, :3]).unbind(1)
            s = i * torch.tanh(g4[:, 3])
            return o * torch.tanh(s), s
        h_prev, s_prev = state
        g4 = (gx_t + self.state_conv(h_prev)).unflatten(1, (4, self.hidden))
        ifo = g4[:, :3]
        if self.peephole is not None:
            ifo = torch.addcmul(ifo, self.peephole, s_prev.unsqueeze(1))
        i, f, o = torch.sigmoid(ifo).unbind(1)
        s = torch.addcmul(f * s_prev, i, torch.tanh(g4[:, 3]))
        return o * torch.tanh(s), s

    def forward(self, x: Tensor, state: State | None = None, *, time_chunk: int | None = None) -> State:
        """Run the sequence ``x`` (B, T, C, H, W) and return the last ``(H_T, S_T)``.

        ``time_chunk``: time steps per input-convolution call; None = all T in one call on
        CUDA, one step per call on CPU (measured faster there: a (B*T)-image convolution
        leaves the caches; see ``bench/bench_convlstm.py``).
        """
        steps = x.shape[1]
        if time_chunk is None:
            time_chunk = steps if x.is_cuda else 1
        chunk = max(1, time_chunk)
        for t0 in range(0, steps, chunk):
            gx = self.input_gates(x[:, t0 : t0 + chunk])
            # unbind, not gx[:, t]: the backward of T selects would zero-fill T full-size buffers
            for gx_t in (gx.squeeze(1),) if gx.shape[1] == 1 else gx.unbind(1):
                state = self.step(gx_t, state)
        assert state is not None
        return state


class ConvLSTMClassifier(nn.Module):
    """Many-to-one ConvLSTM: window ``(X_k .. X_{k+t-1})`` -> class logits of its last date.

    standardise inputs -> :class:`ConvLSTMCell` -> last hidden state -> dropout -> 1x1 conv.
    """

    def __init__(self, config: ConvLSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.standardize = InputStandardizer(config.in_channels)
        self.cell = ConvLSTMCell(config.in_channels, config.hidden, kernel=config.kernel, peephole=config.peephole)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Conv2d(config.hidden, config.num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: features (B, T, C, H, W), any float dtype, NaN/Inf where missing (set to 0
        after standardisation). Returns logits (B, K, H, W) for the window's last date."""
        if x.dim() != 5 or x.shape[2] != self.config.in_channels:
            raise ValueError(
                f"expected (B, T, {self.config.in_channels}, H, W) features, got {tuple(x.shape)}"
            )
        z = self.standardize(x, channel_dim=2)
        h, _ = self.cell(z)
        return self.head(self.dropout(h))
