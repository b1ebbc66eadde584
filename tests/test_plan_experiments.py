"""pipeline.plan.experiments: the runs of each experiment, their folders and options, against
expectations written out by hand."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.plan.experiments import (
    PAPER_EXPERIMENTS,
    check_aoi_names,
    experiment_run_dir,
    experiment_runs,
    experiment_tables,
    experiment_train_overrides,
    experiment_value,
    fold_argument,
    is_main_run,
)

TRAIN = {"label_fraction": 1.0, "time_steps": 6}


def config(voting: str = "none") -> dict:
    return {
        "aois": {"b": {}, "a": {}},
        "train": {"time_steps": TRAIN["time_steps"]},
        "labels": {"scarcity": {"date_fraction": TRAIN["label_fraction"]}},
        "voting": {"method": voting},
        "evaluation": {"folds": 2},
        "experiments": {"models": ["rf", "unet"],
                        "label_fraction": {"values": [1.0, 0.1], "models": ["convlstm"]},
                        "time_steps": {"values": [3, 6], "models": ["semi_convlstm"]},
                        "max_cloud_cover": {"values": [10, 100], "models": ["semi_convlstm"]}},
    }


@pytest.mark.parametrize(("value", "text"), [(0.5, "0.5"), (1.0, "1"), (10, "10"), ("0.10", "0.1"), (100.0, "100")])
def test_values_in_paths(value, text) -> None:
    assert experiment_value(value) == text


@pytest.mark.parametrize(("experiment", "value", "main"), [
    ("compare", None, True), ("cv", 0, False), ("cloud_cover", 100, True), ("cloud_cover", "100", True),
    ("cloud_cover", 50, False), ("label_fraction", 1.0, True), ("label_fraction", "1", True),
    ("label_fraction", 0.1, False), ("time_length", 6, True), ("time_length", "6", True), ("time_length", 3, False),
])
def test_main_runs(experiment, value, main) -> None:
    assert is_main_run(experiment, value, TRAIN) is main


def test_run_folders() -> None:
    assert experiment_run_dir("x", "compare", None, TRAIN) == "results/x"
    assert experiment_run_dir("x", "label_fraction", 1.0, TRAIN) == "results/x"
    assert experiment_run_dir("x", "label_fraction", 0.1, TRAIN) == "results/x/experiments/label_fraction/0.1"
    assert experiment_run_dir("x", "time_length", 3, TRAIN) == "results/x/experiments/time_length/3"
    assert experiment_run_dir("x", "cloud_cover", 10, TRAIN) == "results/x/experiments/cloud_cover/10"
    assert experiment_run_dir("x", "cv", 1, TRAIN) == "results/x/experiments/cv/1"


def test_label_fraction_runs_in_table_order() -> None:
    runs = experiment_runs("label_fraction", config())
    assert runs == [
        {"aoi": "a", "model": "convlstm", "value": 1.0, "accuracy": "results/a/reports/convlstm/accuracy.json",
         "card": "results/a/models/convlstm/model_card.json"},
        {"aoi": "a", "model": "convlstm", "value": 0.1,
         "accuracy": "results/a/experiments/label_fraction/0.1/reports/convlstm/accuracy.json",
         "card": "results/a/experiments/label_fraction/0.1/models/convlstm/model_card.json"},
        {"aoi": "b", "model": "convlstm", "value": 1.0, "accuracy": "results/b/reports/convlstm/accuracy.json",
         "card": "results/b/models/convlstm/model_card.json"},
        {"aoi": "b", "model": "convlstm", "value": 0.1,
         "accuracy": "results/b/experiments/label_fraction/0.1/reports/convlstm/accuracy.json",
         "card": "results/b/experiments/label_fraction/0.1/models/convlstm/model_card.json"},
    ]


def test_compare_runs_with_and_without_voting() -> None:
    plain = experiment_runs("compare", config())
    assert [(r["aoi"], r["model"], r["value"]) for r in plain] == [
        ("a", "rf", None), ("a", "unet", None), ("b", "rf", None), ("b", "unet", None)]
    voted = experiment_runs("compare", config(voting="majority"))
    assert [r["model"] for r in voted] == ["rf", "rf+voting", "unet", "unet+voting"] * 2
    assert voted[1] == {"aoi": "a", "model": "rf+voting", "value": None,
                        "accuracy": "results/a/reports/rf/voted/accuracy.json",
                        "card": "results/a/models/rf/model_card.json"}


def test_cv_runs_are_the_folds() -> None:
    runs = experiment_runs("cv", config())
    assert [(r["aoi"], r["model"], r["value"]) for r in runs] == [
        (aoi, model, fold) for aoi in "ab" for model in ("rf", "unet") for fold in (0, 1)]
    assert runs[1]["accuracy"] == "results/a/experiments/cv/1/reports/rf/accuracy.json"


def test_cloud_cover_and_time_length_runs() -> None:
    cloud = experiment_runs("cloud_cover", config())
    assert [r["card"] for r in cloud if r["aoi"] == "a"] == [
        "results/a/experiments/cloud_cover/10/models/semi_convlstm/model_card.json",
        "results/a/models/semi_convlstm/model_card.json"]
    time = experiment_runs("time_length", config())
    assert [r["accuracy"] for r in time if r["aoi"] == "b"] == [
        "results/b/experiments/time_length/3/reports/semi_convlstm/accuracy.json",
        "results/b/reports/semi_convlstm/accuracy.json"]


def test_train_overrides_and_fold_argument() -> None:
    assert experiment_train_overrides("label_fraction", "0.1") == {"label_fraction": 0.1}
    assert experiment_train_overrides("time_length", "3") == {"time_steps": 3}
    assert experiment_train_overrides("time_length", "3.0") == {"time_steps": 3}
    assert experiment_train_overrides("cloud_cover", "10") == {}
    assert experiment_train_overrides("cv", "1") == {}
    assert fold_argument("cv", "2") == "--fold 2"
    assert fold_argument("label_fraction", "0.1") == ""


def test_tables_and_reserved_aoi_name() -> None:
    assert experiment_tables("cv") == ["results/experiments/cv.csv", "results/experiments/cv.json",
                                       "results/experiments/cv.png"]
    assert PAPER_EXPERIMENTS == ("compare", "label_fraction", "time_length", "cloud_cover")
    check_aoi_names({"demo": {}})
    with pytest.raises(ConfigError, match="may not be named 'experiments'"):
        check_aoi_names({"experiments": {}})
