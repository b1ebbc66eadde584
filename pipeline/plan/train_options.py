"""The train options one model's job gets: the flat train options narrowed to that model (stdlib only).

The flat train options are the ``train`` section with the keys that moved out of it (model
families, label scarcity, segmentation, device) under their stage names
(:func:`pipeline.plan.config_moves.flat_section`).

Settings that a model does not use are left out, so that changing them does not rerun it
(Snakemake reruns a job whose params changed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.models.registry import split_model_name
from pipeline.plan.search_space import model_search_space

RELEARNING_ONLY_KEYS = ("relearning_base", "segment_method", "segment_scale", "segment_size")
SEMI_SUPERVISED_KEYS = ("consistency_weight", "consistency_scaling", "unlabelled_window_ratio")


def model_train_options(train: Mapping[str, Any], model: str, *, classes: Sequence[Mapping[str, Any]],
                        target: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options of ``python -m pipeline.train --options`` for path model name ``model``
    (``{model}_relearn_{strategy}`` included): the flat train options ``train`` with ``overrides``, ``model``
    and ``relearning`` from the name, the class table ``classes``; ``holdout_last_date`` off for
    a period map (``target`` = predict.target ``period``: the test is spatial); the relearning
    keys only for relearning models, the semi-supervised keys only for ``semi_convlstm``, the
    search space narrowed to the baseline (:func:`pipeline.plan.search_space.model_search_space`)."""
    name, strategy = split_model_name(model)
    options = {**train, **(overrides or {}), "model": name, "relearning": strategy, "classes": list(classes)}
    if target == "period":
        options["holdout_last_date"] = False
    if strategy == "none":
        for key in RELEARNING_ONLY_KEYS:
            options.pop(key, None)
    if name != "semi_convlstm":
        for key in SEMI_SUPERVISED_KEYS:
            options.pop(key, None)
    options["search_space"] = model_search_space(options.get("search_space"), name)
    return options
