"""Model names as used in paths and workflow wildcards (stdlib only: imported by the Snakefile).

``results/{aoi}/models/{name}/``, ``maps/{name}/``, ``reports/{name}/`` where ``name`` is a
train model (``semi_convlstm``, ``convlstm``, ``pixel_lstm``, ``rf``, ``svm``, ``unet``,
``unet_stack``, ``unet_convlstm``) or a relearning model ``{model}_relearn_{strategy}``
(strategy ``pixel`` | ``object``): ``{model}`` trained on the features extended with the
class probabilities of the first-stage model ``train.relearning_base`` (default ``{model}``),
see :mod:`pipeline.training.relearning`.
"""

from __future__ import annotations

import re

MODEL_NAMES = ("semi_convlstm", "convlstm", "pixel_lstm", "rf", "svm", "unet", "unet_stack", "unet_convlstm")
RELEARNING_STRATEGIES = ("pixel", "object")
RELEARN_PATTERN = re.compile(r"^(?P<model>.+)_relearn_(?P<strategy>pixel|object)$")


def model_wildcard_pattern() -> str:
    """The regular expression of the workflow's ``{model}`` wildcard: a train model of
    :data:`MODEL_NAMES`, optionally ``_relearn_{strategy}``."""
    return f"(?:{'|'.join(MODEL_NAMES)})(?:_relearn_(?:{'|'.join(RELEARNING_STRATEGIES)}))?"


def split_model_name(name: str) -> tuple[str, str]:
    """Path/wildcard model name -> (train model, relearning strategy):
    ``"unet_relearn_object"`` -> ("unet", "object"); a name without the suffix -> (name, "none")."""
    m = RELEARN_PATTERN.match(name)
    return (m["model"], m["strategy"]) if m else (name, "none")


def relearning_name(model: str, strategy: str) -> str:
    """Inverse of :func:`split_model_name`: ("unet", "pixel") -> "unet_relearn_pixel"."""
    return model if strategy == "none" else f"{model}_relearn_{strategy}"
