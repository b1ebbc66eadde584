"""The runs of the paper's experiments and their folders (stdlib only).

A run of an experiment is the usual train -> predict -> evaluate chain with one parameter taken
from its path. A run that equals the main training (its label fraction
``labels.scarcity.date_fraction`` and ``train.time_steps``, cloud cover 100 = every date, every
run of ``compare``) reuses
``results/{aoi}/models|maps|reports``; the others live under
``results/{aoi}/experiments/{experiment}/{value}/``. ``cv`` (spatial k-fold cross-validation)
has the folds ``0 .. evaluation.folds - 1`` as values and never reuses the main run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.errors import ConfigError
from pipeline.plan.config_moves import MOVED_KEYS, dotted

# experiment -> (dotted key of experiments.* holding the values, of experiments.* holding the models);
# the experiment lists are named after the option they vary (labels.scarcity.date_fraction is the
# train option label_fraction)
EXPERIMENT_SETTINGS: dict[str, tuple[str | None, str]] = {
    "compare": (None, "models"),
    "label_fraction": ("label_fraction.values", "label_fraction.models"),
    "time_length": ("time_steps.values", "time_steps.models"),
    "cloud_cover": ("max_cloud_cover.values", "max_cloud_cover.models"),
    "cv": ("folds", "models"),  # the values are the folds 0..evaluation.folds-1
}
PAPER_EXPERIMENTS = ("compare", "label_fraction", "time_length", "cloud_cover")  # the `experiments` target
EXPERIMENT_TRAIN_OPTION = {"label_fraction": "label_fraction", "time_length": "time_steps"}  # the varied option
RESERVED_AOI = "experiments"  # results/experiments/ holds the experiment tables


def check_aoi_names(aois: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for an AOI named like the experiment tables' folder."""
    if RESERVED_AOI in aois:
        raise ConfigError(f"an AOI may not be named {RESERVED_AOI!r} (results/{RESERVED_AOI}/ holds the "
                          "experiment tables); rename it in the aois section")


def experiment_value(value: float | str) -> str:
    """A parameter value as written in paths: 0.5 -> '0.5', 1.0 -> '1', 10 -> '10'."""
    return f"{float(value):g}"


def is_main_run(experiment: str, value: float | str | None, train: Mapping[str, Any]) -> bool:
    """True when the run equals the main training of the flat train options ``train``
    (:func:`pipeline.plan.config_moves.flat_section`; its outputs are reused)."""
    if experiment == "compare":
        return True
    if experiment == "cv":
        return False
    if experiment == "cloud_cover":
        return float(value) >= 100
    return float(value) == float(train[EXPERIMENT_TRAIN_OPTION[experiment]])


def experiment_run_dir(aoi: str, experiment: str, value: float | str | None, train: Mapping[str, Any]) -> str:
    """``results/{aoi}`` for a main run, else ``results/{aoi}/experiments/{experiment}/{value}``."""
    if is_main_run(experiment, value, train):
        return f"results/{aoi}"
    return f"results/{aoi}/experiments/{experiment}/{experiment_value(value)}"


def main_train_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The train options the experiments vary (``label_fraction``, ``time_steps``) as the main
    training of ``config`` sets them (``labels.scarcity.date_fraction``, ``train.time_steps``)."""
    return {option: dotted(config, MOVED_KEYS.get(f"train.{option}", f"train.{option}"))
            for option in EXPERIMENT_TRAIN_OPTION.values()}


def experiment_runs(experiment: str, config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every run of ``experiment`` in table order (AOI sorted, model and value as configured):
    ``aoi``, ``model``, ``value`` and the paths of its ``accuracy`` (accuracy.json) and ``card``
    (model_card.json). With ``voting.method`` set, every ``compare`` run is followed by the same
    map after object-based voting (model ``{model}+voting``, the voted accuracy)."""
    values_key, models_key = EXPERIMENT_SETTINGS[experiment]
    section = config["experiments"]
    if experiment == "cv":
        values: list[Any] = list(range(config["evaluation"]["folds"]))
    else:
        values = [None] if values_key is None else list(dotted(section, values_key))
    voting = config["voting"]["method"] != "none"
    train = main_train_options(config)
    runs = []
    for aoi in sorted(config["aois"]):
        for model in dotted(section, models_key):
            for value in values:
                folder = experiment_run_dir(aoi, experiment, value, train)
                runs.append({"aoi": aoi, "model": model, "value": value,
                             "accuracy": f"{folder}/reports/{model}/accuracy.json",
                             "card": f"{folder}/models/{model}/model_card.json"})
                if experiment == "compare" and voting:
                    runs.append({"aoi": aoi, "model": f"{model}+voting", "value": value,
                                 "accuracy": f"{folder}/reports/{model}/voted/accuracy.json",
                                 "card": f"{folder}/models/{model}/model_card.json"})
    return runs


def experiment_train_overrides(experiment: str, value: str) -> dict[str, Any]:
    """The train option a run of ``experiment`` varies, from its path ``value``:
    ``{"label_fraction": 0.1}``, ``{"time_steps": 6}``; nothing for the other experiments."""
    option = EXPERIMENT_TRAIN_OPTION.get(experiment)
    if option == "time_steps":
        return {option: int(float(value))}
    if option is not None:
        return {option: float(value)}
    return {}


def fold_argument(experiment: str, value: str) -> str:
    """``--fold K`` (train and evaluate stages) for a cross-validation run, else ''."""
    return f"--fold {int(float(value))}" if experiment == "cv" else ""


def experiment_tables(experiment: str) -> list[str]:
    """The table (CSV, JSON) and plot (PNG) of an experiment."""
    return [f"results/experiments/{experiment}.{ext}" for ext in ("csv", "json", "png")]
