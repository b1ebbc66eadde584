"""Bad inputs give clear errors naming the problem and the fix - never a traceback, never a
silently wrong result.

Config: cases generated from the JSON Schema - every typed key set to a value of the wrong
type, every bounded key set out of range, every enum set to an unknown choice, every number set
to NaN / Inf - must raise ConfigError naming the key. Data: every date too cloudy, a series
shorter than the training window, Inf in the cube, a checkpoint left by a run on other data.

Covered elsewhere (not repeated here): unknown config keys and hand-picked bad values
(tests/test_config.py); label rasters with unknown class ids, another CRS, no overlap with the
cube, vectors without dates (tests/test_reference_labels.py); all scenes over the cloud limit
and an empty date range (tests/test_search.py); an AOI far from every scene
(tests/test_reliability_stac.py); truncated or unreadable assets (tests/test_cube_errors.py,
tests/test_reliability_assets.py); NaN features in training (tests/test_train_stage.py);
corrupt checkpoints (tests/test_training_checkpoint.py).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from test_training_checkpoint import OPTIONS, make_dataset, stop_after

from pipeline import cube as cube_stage
from pipeline import search as search_stage
from pipeline.config import check_config, load_schema
from pipeline.enrich import FeatureOptions, build_features
from pipeline.errors import ConfigError, TrainingError
from pipeline.models.files import load_checkpoint
from pipeline.plan.code_digest import code_digest
from pipeline.training.checkpoint import save_checkpoint
from pipeline.training.trainer import train_model

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema()
BASE = yaml.safe_load((REPO / "config.yaml").read_text())

# --------------------------------------------------------------------------- config from the schema

Path_ = tuple[str | int, ...]


def schema_keys(schema: dict[str, Any], path: Path_ = ()) -> Iterator[tuple[Path_, dict[str, Any]]]:
    """(path, subschema) of every property, list item and map value; ``0`` = first list item,
    ``"*"`` = any key of a free-form mapping (aois, sensor.bands, ...)."""
    for name, sub in schema.get("properties", {}).items():
        yield (*path, name), sub
        yield from schema_keys(sub, (*path, name))
        for part, child in ((0, sub.get("items")), ("*", sub.get("additionalProperties"))):
            if isinstance(child, dict):
                yield (*path, name, part), child
                yield from schema_keys(child, (*path, name, part))


def put(config: dict[str, Any], path: Path_, value: object) -> str:
    """Set ``value`` at ``path`` in ``config`` (creating what is missing); return the dotted key."""
    cur: Any = config
    names = []
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if part == "*":
            part = min(cur) if cur else "red"
        if isinstance(cur, dict) and part not in cur and not last:
            cur[part] = [] if isinstance(path[i + 1], int) else {}
        if isinstance(cur, list) and int(part) >= len(cur):
            cur.append(None if last else {})
        names.append(str(part))
        if last:
            cur[part] = value
        else:
            cur = cur[part]
    return ".".join(names)


def types_of(sub: dict[str, Any]) -> list[str]:
    t = sub.get("type", [])
    return list(t) if isinstance(t, list) else [t]


def fits(value: object, types: list[str]) -> bool:
    checks = {"string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
              "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
              "array": lambda v: isinstance(v, list), "object": lambda v: isinstance(v, dict),
              "null": lambda v: v is None}
    return any(checks[t](value) for t in types)


def wrong_value(types: list[str]) -> object:
    return next(v for v in ("not-a-number", 12345, 1.5, ["x"], {"x": 1}, True) if not fits(v, types))


TYPED = [(p, s) for p, s in schema_keys(SCHEMA) if s.get("type")]
NUMBERS = [(p, s) for p, s in TYPED if "number" in types_of(s)]
BOUNDED = [(p, s, kw) for p, s in TYPED for kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
           if kw in s]
ENUMS = [(p, s) for p, s in TYPED if "enum" in s]


def ident(path: Path_) -> str:
    return ".".join(map(str, path))


def rejected(path: Path_, value: object) -> tuple[str, str]:
    config = copy.deepcopy(BASE)
    key = put(config, path, value)
    with pytest.raises(ConfigError) as err:
        check_config(config, SCHEMA)  # the schema loaded once (the same file check_config reads)
    return key, str(err.value)


def test_the_generated_cases_cover_the_schema() -> None:
    assert len(TYPED) > 100 and len(NUMBERS) > 20 and len(BOUNDED) > 40 and len(ENUMS) > 10
    assert check_config(copy.deepcopy(BASE), SCHEMA)  # the base config itself is valid


@pytest.mark.parametrize(("path", "sub"), TYPED, ids=[ident(p) for p, _ in TYPED])
def test_every_key_of_the_wrong_type_is_named(path: Path_, sub: dict[str, Any]) -> None:
    value = wrong_value(types_of(sub))
    key, msg = rejected(path, value)
    assert f"'{key}'" in msg, msg


@pytest.mark.parametrize(("path", "sub", "kw"), BOUNDED, ids=[f"{ident(p)}-{kw}" for p, _, kw in BOUNDED])
def test_every_bounded_key_out_of_range_is_named_with_the_range(path: Path_, sub: dict[str, Any], kw: str) -> None:
    bound = sub[kw]
    step = 1 if "integer" in types_of(sub) else max(abs(bound) * 0.5, 0.5)
    value = {"minimum": bound - step, "maximum": bound + step, "exclusiveMinimum": bound,
             "exclusiveMaximum": bound}[kw]
    key, msg = rejected(path, value)
    assert f"'{key}'" in msg and "out of range" in msg and str(bound) in msg, msg


@pytest.mark.parametrize(("path", "sub"), ENUMS, ids=[ident(p) for p, _ in ENUMS])
def test_every_enum_key_names_the_allowed_values(path: Path_, sub: dict[str, Any]) -> None:
    key, msg = rejected(path, "no-such-choice" if "string" in types_of(sub) else 987654)
    assert f"'{key}'" in msg and "allowed values" in msg and json.dumps(sub["enum"][0]) in msg, msg


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(("path", "sub"), NUMBERS, ids=[ident(p) for p, _ in NUMBERS])
def test_every_number_key_rejects_nan_and_inf(path: Path_, sub: dict[str, Any], value: float) -> None:
    """YAML ``.nan`` passes JSON Schema ranges (NaN compares false), so it is checked on its own."""
    key, msg = rejected(path, value)
    assert f"'{key}'" in msg, msg
    if np.isnan(value):  # the message says what is wrong and how to fix it
        assert "not a finite number" in msg and "give a finite value" in msg


# --------------------------------------------------------------------------- data

AOI = {"bbox": [-39.6, 72.0, -38.4, 72.5], "start": "2025-07-01", "end": "2025-07-31", "crs": "EPSG:32624"}


def test_every_date_too_cloudy_for_the_cube_names_dates_and_fix(real_scene_catalog, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    folder, _, _ = real_scene_catalog(tmp_path / "catalog")
    items = tmp_path / "items.json"
    assert search_stage.main(["--name", "g", "--aoi", json.dumps(AOI), "--out", str(items),
                              "--options", json.dumps({"url": str(folder), "platforms": []})]) == 0
    out = tmp_path / "cube.zarr"
    code = cube_stage.main(["--items", str(items), "--name", "g", "--aoi", json.dumps(AOI), "--out", str(out),
                            "--options", json.dumps({"resolution": 600, "anchor": "edge", "min_valid_fraction": 0.99})])
    assert code == 2 and not out.exists() and not list(tmp_path.glob(".tmp-*"))
    msg = next(r.getMessage() for r in caplog.records if r.name == "pipeline.cli")
    for part in ("no date left in the cube", "2025-07-10", "2025-07-11", "valid fraction", "< 0.99",
                 "lower cube.min_valid_fraction"):
        assert part in msg, (part, msg)


@pytest.mark.parametrize("n_times", [3, 4])
def test_a_series_too_short_for_the_window_names_time_steps(n_times: int, tmp_path: Path) -> None:
    """t = 4: three dates (one fewer than t) and four dates (no date left once the last is held out)."""
    f, lab = make_dataset(n_times=n_times, size=32)
    with pytest.raises(TrainingError) as err:
        train_model(f, lab, tmp_path / "m", {**OPTIONS, "epochs": 1})
    msg = str(err.value)
    for part in (f"the features hold {n_times} dates", "time_steps=4", "needs at least 5", "held out",
                 f"at most {n_times - 1}", "widen the AOI dates"):
        assert part in msg, (part, msg)
    assert not (tmp_path / "m" / "model_card.json").exists()


def tiny_cube(seed: int = 0) -> xr.Dataset:
    """cube.zarr layout: 3 dates x 7 bands x 20 x 24 px, EPSG:32649, 30 m, NaN holes."""
    rng = np.random.default_rng(seed)
    refl = (rng.random((3, 7, 20, 24)) * 0.4).astype(np.float32)
    refl[0, :, 2:4, 2:5] = np.nan
    return xr.Dataset(
        {"reflectance": (("time", "band", "y", "x"), refl), "valid": (("time", "y", "x"), rng.random((3, 20, 24)) > 0.1)},
        coords={"time": np.array(["2021-05-01", "2021-05-17", "2021-06-02"], dtype="datetime64[ns]"),
                "band": ["coastal", "blue", "green", "red", "nir08", "swir16", "swir22"],
                "y": 3_100_000.0 - 15 - 30 * np.arange(20), "x": 700_000.0 + 15 + 30 * np.arange(24)},
        attrs={"crs": "EPSG:32649", "transform": [30.0, 0.0, 700_000.0, 0.0, -30.0, 3_100_000.0]},
    )


def test_inf_in_the_cube_is_treated_exactly_like_nodata() -> None:
    """Inf reflectance (a bad scale factor, an overflow) must not spread through PCA and the stem:
    the features equal those of the same cube with NaN there, are finite everywhere, and those
    pixel-dates are flagged not valid."""
    options = FeatureOptions(stem="gabor", device="cpu", pca_sample=10_000)
    with_inf, with_nan = tiny_cube(), tiny_cube()
    spots = [(1, 3, 5, 6), (1, 0, 10, 10), (2, 6, 19, 23)]  # (time, band, y, x)
    for t, b, y, x in spots:
        with_inf["reflectance"].values[t, b, y, x] = np.inf if b else -np.inf
        with_nan["reflectance"].values[t, b, y, x] = np.nan
    a = build_features(with_inf, options).compute()
    b = build_features(with_nan, options).compute()
    np.testing.assert_array_equal(a["features"].values, b["features"].values)
    np.testing.assert_array_equal(a["valid"].values, b["valid"].values)
    assert np.isfinite(a["features"].values).all()
    for t, _, y, x in spots:
        assert not a["valid"].values[t, y, x]
    assert a["valid"].values[1, 5, 7]  # a neighbour stays valid
    clean = build_features(tiny_cube(), options).compute()  # control: the polluted pixels did change something
    assert not np.array_equal(clean["valid"].values, a["valid"].values)


def test_a_checkpoint_of_other_code_is_never_resumed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Snakemake reruns training when the training stage's code changed (its `code` parameter);
    the finished checkpoint.pt of the old code (same data, same options) must not be resumed, or
    the 'new' model is the old one."""
    torch.set_num_threads(1)
    f, lab = make_dataset(size=32)
    opts = {**OPTIONS, "epochs": 2}
    train_model(f, lab, tmp_path / "m", opts)
    ck = load_checkpoint(tmp_path / "m" / "checkpoint.pt")
    assert ck["code_digest"] == code_digest("pipeline.train")
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert card["software"]["code_digest"] == ck["code_digest"]  # provenance of the model
    with caplog.at_level(logging.INFO, logger="pipeline.training.loop"):
        same = train_model(f, lab, tmp_path / "m", opts)  # same code: the finished run is resumed
    assert "resuming from" in caplog.text and same.epochs_run == 2
    ck["code_digest"] = "0" * 16  # as an older version of the training code wrote it
    ck["model_state"] = {k: torch.zeros_like(v) for k, v in ck["model_state"].items()}
    save_checkpoint(ck, tmp_path / "m" / "checkpoint.pt")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.training.loop"):
        again = train_model(f, lab, tmp_path / "m", opts)
    assert "written by other code of the training stage; training from scratch" in caplog.text
    assert again.completed and again.epochs_run == 2
    new = load_checkpoint(tmp_path / "m" / "model.pt")["model_state"]
    train_model(f, lab, tmp_path / "fresh", opts)
    ref = load_checkpoint(tmp_path / "fresh" / "model.pt")["model_state"]
    for k, v in ref.items():  # the rerun equals a training from scratch
        assert torch.equal(v, new[k]), k


def test_a_checkpoint_of_other_data_is_never_resumed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Snakemake reruns training when the labels change; the finished checkpoint.pt of the old
    labels (same shapes, same options) must not be resumed, or the 'new' model is the old one."""
    torch.set_num_threads(1)
    f, lab = make_dataset(size=32)
    opts = {**OPTIONS, "epochs": 2}
    train_model(f, lab, tmp_path / "m", opts)
    old = load_checkpoint(tmp_path / "m" / "model.pt")["model_state"]
    relabelled = lab.copy(deep=True)
    relabelled["labels"].values[:] = relabelled["labels"].values[:, ::-1, :]  # other labels, same shape
    with caplog.at_level(logging.WARNING, logger="pipeline.training.loop"):
        again = train_model(f, relabelled, tmp_path / "m", opts)
    assert "written with other options or data; training from scratch" in caplog.text
    assert again.completed and again.epochs_run == 2
    new = load_checkpoint(tmp_path / "m" / "model.pt")["model_state"]
    fresh = train_model(f, relabelled, tmp_path / "fresh", opts)
    assert fresh.completed
    ref = load_checkpoint(tmp_path / "fresh" / "model.pt")["model_state"]
    assert not torch.equal(new["head.weight"], old["head.weight"])
    for k, v in ref.items():  # the rerun equals a training from scratch on the new labels
        assert torch.equal(v, new[k]), k


def test_a_corrupted_checkpoint_stops_the_train_stage_with_the_fix(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A checkpoint.pt damaged on disk (not by a kill: checkpoints are written atomically) is
    never resumed from: the stage exits 2 naming the file and the fix, and writes no model card."""
    from pipeline.raster.zarr_io import write_zarr_atomic
    from pipeline.train import main

    torch.set_num_threads(1)
    f, lab = make_dataset(size=32)
    fz, lz = write_zarr_atomic(f, tmp_path / "features.zarr"), write_zarr_atomic(lab, tmp_path / "labels.zarr")
    out = tmp_path / "models" / "semi_convlstm"
    opts = {**OPTIONS, "epochs": 2}
    train_model(f, lab, out, opts, on_epoch_end=stop_after(1))  # an interrupted training: checkpoint of epoch 1
    checkpoint = out / "checkpoint.pt"
    assert torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"] == 1
    checkpoint.write_bytes(checkpoint.read_bytes()[:-64])
    argv = ["--features", str(fz), "--labels", str(lz), "--out", str(out), "--options", json.dumps(opts)]
    assert main(argv) == 2
    msg = next(r.getMessage() for r in caplog.records if r.name == "pipeline.cli")
    assert str(checkpoint) in msg and "delete it and retrain" in msg
    assert not (out / "model_card.json").exists()
    checkpoint.unlink()  # the fix given in the message works
    assert main(argv) == 0 and (out / "model_card.json").is_file()
