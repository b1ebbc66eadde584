"""Config validation: the schema documents every key, and mistakes stop with a clear message."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import check_config, load_config, load_schema, parse_options, reject_unknown
from pipeline.errors import ConfigError

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
    assert config["catalog"]["retries"] == 5  # default filled in
    assert config["cube"]["chunk"] == 512
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
    assert good["catalog"]["retries"] == 5
    bad = base()
    bad["catalog"]["max_clouds"] = 1
    with pytest.raises(Exception, match="max_clouds"):
        validate(bad, str(schema))


def test_demo_schema_defaults_match_the_generator() -> None:
    import dataclasses

    from pipeline.synthetic import DemoSpec

    props = load_schema()["properties"]["demo"]["properties"]
    fields = {f.name: f.default for f in dataclasses.fields(DemoSpec)}
    assert set(props) == set(fields)
    for name, default in fields.items():
        expected = list(default) if isinstance(default, tuple) else default
        assert props[name]["default"] == expected, name


@pytest.mark.parametrize(
    ("section", "factory", "skip"),
    [
        ("features", "pipeline.enrich.options:FeatureOptions", set()),
        ("labels", "pipeline.reference.options:LabelOptions", {"date_fraction", "date_removal"}),
        ("predict", "pipeline.predict:PredictOptions", set()),
        ("evaluation", "pipeline.evaluate:EvaluationOptions", set()),
        ("cube", "pipeline.raster.load:CubeOptions", set()),
        ("train", "pipeline.training.options:TrainOptions", {"classes"}),
    ],
)
def test_schema_defaults_match_the_stage_options(section: str, factory: str, skip: set[str]) -> None:
    """The schema (what Snakemake passes) and each stage's options dataclass agree on keys and defaults."""
    import dataclasses
    import importlib

    module, name = factory.split(":")
    cls = getattr(importlib.import_module(module), name)
    props = load_schema()["properties"][section]["properties"]
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
    to the stage (section_json: keys become strings) and arrives as {int code: class id}."""
    import json

    from snakemake.utils import validate

    from pipeline.reference.options import LabelOptions

    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    for text in ("{11: 1, 1200: 2, 9120: 0}", '{"11": 1, "1200": 2, "9120": 0}'):
        config = base()
        config["labels"].update(ignore_values=[0, 255], value_map=yaml.safe_load(text))
        check_config(config)
        validate(copy.deepcopy(config), str(schema))
        opts = LabelOptions.from_json(json.dumps(config["labels"]))
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
