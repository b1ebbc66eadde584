"""pipeline.plan.train_options and search_space: the train options one model's job gets, against
expectations written out by hand; the name lists agree with the stages'."""

from __future__ import annotations

from pathlib import Path

from pipeline.plan.search_space import SEARCH_SPACE_KEYS, model_search_space
from pipeline.plan.train_options import model_train_options

REPO = Path(__file__).resolve().parents[1]
CLASSES = [{"id": 1, "name": "a", "color": "#000000"}]
TRAIN = {"model": "semi_convlstm", "time_steps": 6, "holdout_last_date": True, "consistency_weight": 10.0,
         "consistency_scaling": "linear", "unlabelled_window_ratio": 1.0, "relearning": "none",
         "relearning_base": None, "segment_method": "felzenszwalb", "segment_scale": 100.0, "segment_size": 30,
         "search_space": {"n_estimators": [10], "C": [1], "bogus": [2]}}


def test_search_space_per_baseline() -> None:
    space = {"n_estimators": [10], "max_depth": [3], "C": [1], "gamma": ["scale"], "bogus": [2]}
    assert model_search_space(space, "rf") == {"n_estimators": [10], "max_depth": [3], "bogus": [2]}
    assert model_search_space(space, "svm") == {"C": [1], "gamma": ["scale"], "bogus": [2]}
    assert model_search_space(space, "unet") is None
    assert model_search_space({"C": [1]}, "rf") is None
    assert model_search_space(None, "svm") is None


def test_search_space_keys_are_the_baselines_parameters() -> None:
    from pipeline.training.baselines import RF_SPACE, SVM_SPACE

    assert SEARCH_SPACE_KEYS == {"rf": set(RF_SPACE), "svm": set(SVM_SPACE)}


def test_semi_convlstm_keeps_its_keys() -> None:
    got = model_train_options(TRAIN, "semi_convlstm", classes=CLASSES, target="last_date")
    assert got == {"model": "semi_convlstm", "time_steps": 6, "holdout_last_date": True, "consistency_weight": 10.0,
                   "consistency_scaling": "linear", "unlabelled_window_ratio": 1.0, "relearning": "none",
                   "search_space": None, "classes": CLASSES}


def test_rf_for_a_period_map_with_overrides() -> None:
    got = model_train_options(TRAIN, "rf", classes=CLASSES, target="period", overrides={"time_steps": 3})
    assert got == {"model": "rf", "time_steps": 3, "holdout_last_date": False, "relearning": "none",
                   "search_space": {"n_estimators": [10], "bogus": [2]}, "classes": CLASSES}
    assert list(got) == ["model", "time_steps", "holdout_last_date", "relearning", "search_space", "classes"]


def test_relearning_model_keeps_the_relearning_keys() -> None:
    got = model_train_options(TRAIN, "unet_relearn_object", classes=CLASSES, target="last_date")
    assert got == {"model": "unet", "time_steps": 6, "holdout_last_date": True, "relearning": "object",
                   "relearning_base": None, "segment_method": "felzenszwalb", "segment_scale": 100.0,
                   "segment_size": 30, "search_space": None, "classes": CLASSES}
    assert TRAIN["model"] == "semi_convlstm" and "consistency_weight" in TRAIN  # the section is not changed
