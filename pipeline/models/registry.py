"""The registry of the pipeline's models: one place for every model name and what it is.

Standard library only (the Snakefile imports it and it must not load torch): each model has a
:class:`ModelSpec` with its name (as in paths, ``results/{aoi}/models/{name}/``, and workflow
wildcards), its :data:`Family`, whether it is semi-supervised, its display labels and whether
the ``time_length`` experiment accepts it. The tuples of names the training, prediction and
report code dispatch on (:data:`TORCH_MODELS`, :data:`SKLEARN_MODELS`, ...) are derived here.

Relearning models (relearning paper) are named ``{model}_relearn_{strategy}`` (strategy
``pixel`` | ``object``): ``{model}`` trained on the features extended with the class
probabilities of the first-stage model ``train.relearning_base`` (default ``{model}``), see
:mod:`pipeline.training.relearning`; :func:`split_model_name` / :func:`relearning_name` convert.

Receptive field and tile alignment, by family (the arithmetic: :mod:`pipeline.models.receptive`):

* ``sklearn_pixel``, ``torch_pixel``: per-pixel models, radius 0, alignment 1;
* ``torch_convlstm`` (patch ConvLSTM): radius ``(k // 2) (t + 1)``, alignment 1;
* ``torch_unet``, ``torch_unet_convlstm``: the UNet formula of :mod:`pipeline.models.unet_parts`
  (with the ConvLSTM of ``t`` steps at the bottleneck, and on the skips with lstm_skips, for
  the latter); max-pooling makes them shift-equivariant by multiples of 2^depth only, so tile
  origins and halo are multiples of 2^depth (:data:`POOLED_FAMILIES`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

ModelName = Literal["semi_convlstm", "convlstm", "pixel_lstm", "rf", "svm", "unet", "unet_stack", "unet_convlstm"]
Family = Literal["sklearn_pixel", "torch_pixel", "torch_convlstm", "torch_unet", "torch_unet_convlstm"]
ReceptiveRule = Literal["pixel", "convlstm", "unet", "unet_convlstm"]
Relearning = Literal["none", "pixel", "object"]

RECEPTIVE_RULES: dict[str, ReceptiveRule] = {
    "sklearn_pixel": "pixel", "torch_pixel": "pixel", "torch_convlstm": "convlstm", "torch_unet": "unet",
    "torch_unet_convlstm": "unet_convlstm",
}
POOLED_FAMILIES: tuple[str, ...] = ("torch_unet", "torch_unet_convlstm")


@dataclass(frozen=True)
class ModelSpec:
    """One model of the pipeline.

    name: the train model name (``train.model``, path and wildcard component). family: how it is
    built and applied (:data:`Family`). label: display name in figures and report tables;
    short_label: the name in the sentences of the paper's claims. semi_supervised: trained with
    the consistency loss on unlabelled pixels. time_length: accepted by the ``time_length``
    experiment (``experiments.time_steps.models``).
    """

    name: str
    family: Family
    label: str
    short_label: str
    semi_supervised: bool = False
    time_length: bool = False

    @property
    def is_torch(self) -> bool:
        """A torch ``nn.Module`` (else a scikit-learn baseline)."""
        return self.family != "sklearn_pixel"

    @property
    def receptive_rule(self) -> ReceptiveRule:
        """Which receptive-field formula applies (see the module docstring)."""
        return RECEPTIVE_RULES[self.family]

    @property
    def pooled(self) -> bool:
        """Max-pooling model: tile origins and halo must be multiples of 2^depth."""
        return self.family in POOLED_FAMILIES


# In the order of :data:`ModelName` (the order error messages and the wildcard list them in).
# The UNet models keep their names as labels (what the figures have always shown).
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("semi_convlstm", "torch_convlstm", "Semi-ConvLSTM", "Semi-ConvLSTM", semi_supervised=True,
              time_length=True),
    ModelSpec("convlstm", "torch_convlstm", "ConvLSTM", "ConvLSTM", time_length=True),
    ModelSpec("pixel_lstm", "torch_pixel", "LSTM (pixel)", "LSTM", time_length=True),
    ModelSpec("rf", "sklearn_pixel", "RF", "RF"),
    ModelSpec("svm", "sklearn_pixel", "SVM", "SVM"),
    ModelSpec("unet", "torch_unet", "unet", "unet"),
    ModelSpec("unet_stack", "torch_unet", "unet_stack", "unet_stack", time_length=True),
    ModelSpec("unet_convlstm", "torch_unet_convlstm", "unet_convlstm", "unet_convlstm", time_length=True),
)}

MODEL_NAMES: tuple[str, ...] = tuple(MODELS)
TORCH_MODELS: tuple[str, ...] = tuple(n for n, s in MODELS.items() if s.is_torch)
SKLEARN_MODELS: tuple[str, ...] = tuple(n for n, s in MODELS.items() if not s.is_torch)
UNET_MODELS: tuple[str, ...] = tuple(n for n, s in MODELS.items() if s.pooled)
SEMI_SUPERVISED_MODELS: tuple[str, ...] = tuple(n for n, s in MODELS.items() if s.semi_supervised)
TIME_LENGTH_MODELS: tuple[str, ...] = tuple(n for n, s in MODELS.items() if s.time_length)

RELEARN_STRATEGIES: tuple[str, ...] = tuple(s for s in get_args(Relearning) if s != "none")
RELEARN_PATTERN = re.compile(rf"^(?P<model>.+)_relearn_(?P<strategy>{'|'.join(RELEARN_STRATEGIES)})$")
# Snakemake wildcard constraint of {model}: a train model, optionally with a relearning suffix.
MODEL_WILDCARD = f"(?:{'|'.join(MODEL_NAMES)})(?:_relearn_(?:{'|'.join(RELEARN_STRATEGIES)}))?"


def models_of(family: Family) -> tuple[str, ...]:
    """Names of the models of ``family``, in registry order."""
    return tuple(n for n, s in MODELS.items() if s.family == family)


def display_label(name: str) -> str:
    """Figure/table label of a model name; names outside the registry (relearning) as they are."""
    spec = MODELS.get(name)
    return spec.label if spec else name


def short_label(name: str) -> str:
    """Label of a model name in the claims' sentences; names outside the registry as they are."""
    spec = MODELS.get(name)
    return spec.short_label if spec else name


def split_model_name(name: str) -> tuple[str, str]:
    """Path/wildcard model name -> (train model, relearning strategy):
    ``"unet_relearn_object"`` -> ("unet", "object"); a name without the suffix -> (name, "none")."""
    m = RELEARN_PATTERN.match(name)
    return (m["model"], m["strategy"]) if m else (name, "none")


def relearning_name(model: str, strategy: str) -> str:
    """Inverse of :func:`split_model_name`: ("unet", "pixel") -> "unet_relearn_pixel"."""
    return model if strategy == "none" else f"{model}_relearn_{strategy}"
