"""Which keys of ``train.baselines.search_space`` go to which baseline (stdlib only).

One config section serves both baselines: RF gets the RF keys, SVM the SVM keys, a key of
neither goes to both (so that the train stage names it as unknown), the other models none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# parameter names of pipeline.training.baselines.RF_SPACE / SVM_SPACE (tests/test_plan_train_options.py checks)
SEARCH_SPACE_KEYS: dict[str, frozenset[str]] = {
    "rf": frozenset({"n_estimators", "max_depth", "min_samples_split", "min_samples_leaf", "max_features"}),
    "svm": frozenset({"C", "gamma"}),
}


def model_search_space(space: Mapping[str, Any] | None, model: str) -> dict[str, Any] | None:
    """The part of ``space`` (``train.baselines.search_space``: parameter -> candidate values) for the train
    model ``model`` (``rf``, ``svm``, ...): its own keys and the keys of no baseline; None when
    nothing is left (every non-baseline model)."""
    if model not in SEARCH_SPACE_KEYS:
        return None
    other = set().union(*(keys for name, keys in SEARCH_SPACE_KEYS.items() if name != model))
    kept = {k: v for k, v in (space or {}).items() if k not in other}
    return kept or None
