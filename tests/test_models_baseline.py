"""Loading a scikit-learn baseline folder: sha256 check and actionable errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier

from pipeline.errors import CheckpointError
from pipeline.models.baseline import WindowPixelClassifier, load_baseline
from pipeline.models.files import JOBLIB_NAME, META_NAME

#: A pickle of a class at a module path this version of the pipeline does not have.
OLD_PATH_PICKLE = b"cpipeline.no_such_module\nWindowPixelClassifier\n)\x81."


def write_folder(d: Path, blob: bytes) -> Path:
    d.mkdir()
    (d / JOBLIB_NAME).write_bytes(blob)
    (d / META_NAME).write_text(json.dumps({"sha256": hashlib.sha256(blob).hexdigest()}))
    return d


def test_load_baseline_round_trip(tmp_path: Path) -> None:
    import joblib

    est = DummyClassifier(strategy="prior").fit(np.zeros((4, 2)), np.array([0, 1, 1, 1]))
    clf = WindowPixelClassifier(est, mean=np.zeros(2), std=np.ones(2), time_steps=1, num_classes=3)
    d = tmp_path / "m"
    d.mkdir()
    joblib.dump(clf, d / JOBLIB_NAME)
    blob = (d / JOBLIB_NAME).read_bytes()
    (d / META_NAME).write_text(json.dumps({"sha256": hashlib.sha256(blob).hexdigest()}))
    back, meta = load_baseline(d)
    assert isinstance(back, WindowPixelClassifier) and meta["sha256"] == hashlib.sha256(blob).hexdigest()
    p = back.predict_proba_pixels(np.zeros((2, 1, 2), dtype=np.float32))
    assert p.shape == (2, 3) and np.allclose(p[:, 2], 0) and np.allclose(p.sum(1), 1)


def test_altered_file_is_refused(tmp_path: Path) -> None:
    d = write_folder(tmp_path / "m", OLD_PATH_PICKLE)
    (d / JOBLIB_NAME).write_bytes(OLD_PATH_PICKLE + b"x")
    with pytest.raises(CheckpointError, match="sha256"):
        load_baseline(d)


def test_file_of_an_older_layout_asks_for_retraining(tmp_path: Path) -> None:
    d = write_folder(tmp_path / "m", OLD_PATH_PICKLE)
    with pytest.raises(CheckpointError, match="another version of the pipeline.*retrain"):
        load_baseline(d)
