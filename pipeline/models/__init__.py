"""Neural network models of the pipeline, one ``nn.Module`` per file with its config dataclass.

``convlstm``: the ConvLSTM cell of the paper's eq. (2) and the many-to-one classifier used by
the "semi_convlstm" and "convlstm" models; ``pixel_lstm``: the per-pixel LSTM baseline;
``standardize``: the input standardisation shared by both. No training code lives here.
"""

from __future__ import annotations
