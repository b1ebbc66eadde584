"""Config validation: the schema documents every key, and mistakes stop with a clear message."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import check_config, load_config, load_schema, parse_options, reject_unknown
from pipeline.errors import ConfigError
from pipeline.plan.config_moves import MOVED_KEYS, STAGE_SECTIONS, dotted, flat_section, grouped_keys

REPO = Path(__file__).resolve().parents[1]


def base() -> dict[str, Any]:
    with open(REPO / "config.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def walk(schema: dict, path: str = "") -> list[tuple[str, dict, bool]]:
    """(path, subschema, required) for every property of every object in the schema."""
    out = []
    required = set(schema.get("required", []))
    for name, sub in schema.get("properties", {}).items():
        out.append((f"{path}{name}", sub, name in required))
        out += walk(sub, f"{path}{name}.")
        if isinstance(sub.get("items"), dict):
            out += walk(sub["items"], f"{path}{name}[].")
        if isinstance(sub.get("additionalProperties"), dict):
            out += walk(sub["additionalProperties"], f"{path}{name}.*.")
    return out


def test_every_key_has_type_description_and_default() -> None:
    schema = load_schema()
    entries = walk(schema)
    assert len(entries) > 40
    for path, sub, required in entries:
        assert "type" in sub, f"{path} has no type"
        assert sub.get("description"), f"{path} has no description"
        inside_list = "[]" in path or ".*." in path or path.startswith("aois")
        if not required and not inside_list:
            assert "default" in sub, f"{path} has no default"


def test_objects_reject_unknown_keys() -> None:
    def objects(schema: dict, path: str = "") -> list[str]:
        bad = []
        if schema.get("type") == "object" and "properties" in schema and schema.get("additionalProperties") is not False:
            bad.append(path or "<top>")
        for name, sub in schema.get("properties", {}).items():
            bad += objects(sub, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                bad += objects(schema[key], f"{path}.{key}")
        return bad

    assert objects(load_schema()) == []


def test_default_config_is_valid_and_filled() -> None:
    config = load_config(REPO / "config.yaml")
    assert config["runtime"]["catalog"]["retries"] == 5  # default filled in
    assert config["runtime"]["cube"]["chunk"] == 512
    assert [c["name"] for c in config["classes"]][:4] == ["cultivated", "forest", "construction", "water"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["catalog"].update(max_clouds=10), ["'catalog.max_clouds'", "did you mean 'max_cloud_cover'"]),
        (lambda c: c.update(catalogue={}), ["unknown config key 'catalogue'", "did you mean 'catalog'"]),
        (lambda c: c["catalog"].update(max_cloud_cover=150), ["catalog.max_cloud_cover", "150", "0 to 100"]),
        (lambda c: c["catalog"].update(max_cloud_cover="ten"), ["catalog.max_cloud_cover", "expected number"]),
        (lambda c: c["catalog"].update(signing="sas"), ["catalog.signing", "none", "planetary_computer"]),
        (lambda c: c["cube"].update(on_error="ignore"), ["cube.on_error", '"raise", "skip"']),
        (lambda c: c["cube"].update(resolution=0), ["cube.resolution", "out of range"]),
        (lambda c: c["sensor"]["qa"].update(invalid_bits=[16]), ["sensor.qa.invalid_bits.0", "16"]),
        (lambda c: c["aois"]["demo"].pop("bbox"), ["aois.demo", "bbox", "geometry"]),
        (lambda c: c["aois"]["demo"].update(start="2021/01/01"), ["aois.demo.start", "format"]),
        (lambda c: c["classes"][0].update(color="yellow"), ["classes.0.color", "yellow"]),
        (lambda c: c.update(aois={"bad name": c["aois"]["demo"]}), ["bad name"]),
    ],
)
def test_bad_values_name_the_key_and_the_fix(mutate, expected: list[str]) -> None:
    config = copy.deepcopy(base())
    mutate(config)
    with pytest.raises(ConfigError) as err:
        check_config(config)
    for part in expected:
        assert part in str(err.value), (part, str(err.value))


def test_parse_options_and_reject_unknown() -> None:
    assert parse_options('{"a": 1}', what="x") == {"a": 1}
    assert parse_options("", what="x") == {}
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_options("{a: 1}", what="x")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        parse_options("[1]", what="x")
    with pytest.raises(ConfigError, match="did you mean 'chunk'"):
        reject_unknown({"chunks": 3}, {"chunk", "resolution"}, section="cube")


def test_snakemake_validation_uses_the_same_schema(tmp_path: Path) -> None:
    """snakemake.utils.validate rejects what check_config rejects, and fills the same defaults."""
    from snakemake.utils import validate

    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    good = base()
    validate(good, str(schema))
    assert good["runtime"]["catalog"]["retries"] == 5
    bad = base()
    bad["catalog"]["max_clouds"] = 1
    with pytest.raises(Exception, match="max_clouds"):
        validate(bad, str(schema))


def test_demo_schema_defaults_match_the_generator() -> None:
    import dataclasses

    from pipeline.synthetic import DemoSpec

    props = load_schema()["properties"]["demo"]["properties"]
    fields = {f.name: f.default for f in dataclasses.fields(DemoSpec)}
    assert set(props) == set(fields) | {"settings"}  # settings: other sections', not the generator's
    del props["settings"]
    for name, default in fields.items():
        expected = list(default) if isinstance(default, tuple) else default
        assert props[name]["default"] == expected, name


def test_demo_settings_fill_unset_keys_on_the_demo_catalog_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config.yaml's demo.settings apply to the demo's catalog (relative or absolute path) under the
    keys left unset; another catalog gets the schema's defaults; the demo section reaches no stage."""
    settings = base()["demo"]["settings"]
    assert settings["features"]["stem"] == "gabor" and settings["train"]["epochs"] == 5
    for section, key in (("features", "stem"), ("train", "epochs"), ("train", "max_windows_per_epoch")):
        assert key not in base()[section], f"{section}.{key} belongs in demo.settings"

    demo = check_config(base())
    assert demo["features"]["stem"] == "gabor"
    assert (demo["train"]["epochs"], demo["train"]["max_windows_per_epoch"]) == (5, 40)
    assert demo["train"]["unet"]["width"] == 16 and demo["labels"]["scarcity"]["pixel_fraction"] == 0.05
    assert demo["runtime"]["predict"]["tile"] == 128

    absolute = base()
    absolute["catalog"]["url"] = str(REPO / "resources" / "demo" / "catalog")
    monkeypatch.chdir(REPO)  # the demo's folder is relative to the working directory
    assert check_config(absolute)["train"]["max_windows_per_epoch"] == 40

    mine = base()
    mine["train"]["epochs"] = 7
    mine["labels"]["scarcity"] = {"points_per_class": 10}
    mine = check_config(mine)
    assert (mine["train"]["epochs"], mine["train"]["max_windows_per_epoch"]) == (7, 40)  # mine wins, the rest fill
    assert mine["labels"]["scarcity"]["points_per_class"] == 10
    assert mine["labels"]["scarcity"]["pixel_fraction"] == 0.05

    schema = load_schema()["properties"]
    for url in (str(tmp_path / "catalog"), "https://planetarycomputer.microsoft.com/api/stac/v1",
                "resources/demo/catalog-copy"):
        other = base()
        other["catalog"]["url"] = url
        other = check_config(other)
        assert other["features"]["stem"] == schema["features"]["properties"]["stem"]["default"] == "resnet18"
        train = schema["train"]["properties"]
        assert other["train"]["epochs"] == train["epochs"]["default"] != 5
        assert other["train"]["max_windows_per_epoch"] == train["max_windows_per_epoch"]["default"] != 40
        assert other["train"]["unet"]["width"] == train["unet"]["properties"]["width"]["default"] != 16
        assert other["labels"]["scarcity"]["pixel_fraction"] == 1.0
        assert other["runtime"]["predict"]["tile"] == 256

    for place in ("aois", "catalog"):
        bad = base()
        bad["demo"]["settings"][place] = {}
        with pytest.raises(ConfigError, match=f"demo.settings' sets {place}.*set {place} at the top level"):
            check_config(bad)
    bad = base()
    bad["demo"]["settings"]["train"]["epoch"] = 3
    with pytest.raises(ConfigError, match="unknown config key 'train.epoch'; did you mean 'epochs'"):
        check_config(bad)


def schema_node(schema: dict, path: str) -> dict:
    """The subschema of dotted config key ``path`` (``train.convlstm.hidden``)."""
    node = schema
    for part in path.split("."):
        node = node["properties"][part]
    return node


def flat_schema(schema: dict, section: str) -> dict[str, dict]:
    """The subschemas of the flat options a stage section's dataclass holds, through
    pipeline.plan.config_moves: the section's own keys (without the blocks holding moved keys)
    and, under their old names, the keys that moved out of it."""
    props = {k: v for k, v in schema["properties"][section]["properties"].items() if k not in grouped_keys(section)}
    for old, new in MOVED_KEYS.items():
        old_section, key = old.split(".", 1)
        if old_section == section:
            props[key] = schema_node(schema, new)
    return props


@pytest.mark.parametrize(
    ("section", "factory", "skip"),
    [
        ("catalog", "pipeline.stac.search:CatalogOptions", set()),
        ("features", "pipeline.enrich.options:FeatureOptions", set()),
        ("labels", "pipeline.reference.options:LabelOptions", {"date_fraction", "date_removal"}),
        ("predict", "pipeline.predict:PredictOptions", set()),
        ("evaluation", "pipeline.evaluate:EvaluationOptions", set()),
        ("cube", "pipeline.raster.load:CubeOptions", set()),
        ("train", "pipeline.training.options:TrainOptions", {"classes"}),
    ],
)
def test_schema_defaults_match_the_stage_options(section: str, factory: str, skip: set[str]) -> None:
    """The schema (what Snakemake passes, through the moves of pipeline.plan.config_moves) and each
    stage's options dataclass agree on keys and defaults."""
    import dataclasses
    import importlib

    module, name = factory.split(":")
    cls = getattr(importlib.import_module(module), name)
    props = flat_schema(load_schema(), section)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    assert set(props) == set(fields), set(props) ^ set(fields)
    for key, f in fields.items():
        if key == "source":  # required by the stage, defaulted to the demo's labels by the config
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if isinstance(default, tuple):
            default = list(default)
        assert props[key]["default"] == (dict(default) if isinstance(default, dict) else default), key


def test_label_code_options_pass_the_schema_and_reach_the_stage() -> None:
    """labels.value_map with YAML integer keys or quoted keys validates, survives the JSON hand-over
    to the stage (section_json, the flat section: keys become strings) and arrives as {int code: class id}."""
    import json

    from snakemake.utils import validate

    from pipeline.reference.options import LabelOptions

    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    for text in ("{11: 1, 1200: 2, 9120: 0}", '{"11": 1, "1200": 2, "9120": 0}'):
        config = base()
        config["labels"].update(ignore_values=[0, 255], value_map=yaml.safe_load(text))
        check_config(config)
        validate(copy.deepcopy(config), str(schema))
        opts = LabelOptions.from_json(json.dumps(flat_section(config, "labels")))
        assert opts.value_map == {11: 1, 1200: 2, 9120: 0} and opts.ignore_values == (0, 255)
    filled = check_config(base())
    assert filled["labels"]["value_map"] == {} and filled["labels"]["ignore_values"] == []
    for mutate, expected in [
        ({"value_map": {11: 255}}, ["labels.value_map.11", "255", "0 to 254"]),
        ({"value_map": {"wheat": 1}}, ["labels.value_map", '"wheat"']),
        ({"ignore_values": [0.5]}, ["labels.ignore_values.0", "integer"]),
    ]:
        config = base()
        config["labels"].update(mutate)
        with pytest.raises(ConfigError) as err:
            check_config(config)
        for part in expected:
            assert part in str(err.value), (part, str(err.value))


@pytest.mark.parametrize("old", sorted(MOVED_KEYS))
def test_a_moved_key_names_its_new_place(old: str) -> None:
    """Every key of the former flat layout stops the config check with its new place (no silent
    rename), before the schema would call it unknown; its new place is a schema key with the
    default the old one had."""
    new = MOVED_KEYS[old]
    schema = load_schema()
    assert "default" in schema_node(schema, new), new
    section, key = old.split(".", 1)
    assert key not in schema["properties"].get(section, {}).get("properties", {}), old
    config = base()
    config.setdefault(section, {})[key] = dotted(check_config(base()), new)
    with pytest.raises(ConfigError) as err:
        check_config(config)
    assert f"config key {old} moved to {new}; edit config.yaml (and any --configfile)" in str(err.value)
    assert "unknown config key" not in str(err.value)


def test_a_moved_section_names_its_new_place() -> None:
    empty = base()
    empty["tiling"] = {}
    with pytest.raises(ConfigError, match=r"config section tiling moved to runtime\.tiling"):
        check_config(empty)


def test_flat_sections_of_the_demo_config() -> None:
    """The grouped config gives every stage its flat section: the moved keys under their old names."""
    config = check_config(base())
    train = flat_section(config, "train")
    assert train["hidden"] == config["train"]["convlstm"]["hidden"] == 16
    assert train["lstm_hidden"] == 256 and train["pixel_batch_size"] == 1024 and train["unet_width"] == 16
    assert train["label_fraction"] == 1.0 and train["label_removal"] == "chronological"
    assert train["segment_method"] == "felzenszwalb" and train["device"] == "auto"
    assert set(train["search_space"]) == {"n_estimators", "max_features", "C", "gamma"}
    assert not set(train) & {"convlstm", "pixel_lstm", "unet", "baselines"}
    labels = flat_section(config, "labels")
    assert labels["pixel_fraction"] == 0.05 and labels["points_per_class"] is None and "scarcity" not in labels
    predict = flat_section(config, "predict")
    assert predict["tile"] == 128 and predict["voting"] == "majority" and predict["segment_size"] == 30
    assert flat_section(config, "catalog")["retries"] == 5 and flat_section(config, "cube")["chunk"] == 512
    assert {flat_section(config, "features")[k] for k in ("chunk", "device")} == {512, "auto"}
    assert set(STAGE_SECTIONS) == {old.split(".")[0] for old in MOVED_KEYS} - {"tiling", "experiments"}
