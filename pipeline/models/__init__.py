"""Neural network models of the pipeline, one ``nn.Module`` per file with its config dataclass.

``convlstm``: the ConvLSTM cell of the paper's eq. (2) and the many-to-one classifier used by
the "semi_convlstm" and "convlstm" models; ``pixel_lstm``: the per-pixel LSTM baseline;
``unet`` (models "unet", "unet_stack"), ``unet_convlstm`` (model "unet_convlstm") and their
``unet_parts`` (blocks, receptive-field formula) from the relearning paper;
``standardize``: the input standardisation shared by all; ``registry`` (standard library only):
every model name, its family, labels and the relearning names; ``receptive``: a trained model's
receptive-field radius, tile alignment and halo; ``build``: the torch models by name
(:func:`~pipeline.models.build.build_model`); ``device``: device choice, autocast and seeding
shared by features, training and prediction; ``files``: the trained-model folder (file names,
reading a checkpoint); ``baseline``: the scikit-learn baselines' per-pixel window classifier and
loading it. No training code (fitting, saving) lives here, this package imports neither
:mod:`pipeline.training` nor :mod:`pipeline.inference`, and it imports no submodule: import from
the submodules.
"""

from __future__ import annotations
