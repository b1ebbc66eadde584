"""The validated configuration: JSON Schema with defaults and messages that say how to fix.

The schema lives in ``workflow/schemas/config.schema.yaml`` (the Snakefile validates with
``snakemake.utils.validate`` against the same file). :func:`check_config` runs the same
Draft 2020-12 validation with defaults filled in, and turns every violation into one line that
names the key (``catalog.max_cloud_cover``), what is wrong and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError, validators

from pipeline.errors import ConfigError
from pipeline.plan.config_moves import moved_key_problems
from pipeline.stac.catalog_url import DEMO_CATALOG, is_demo_catalog

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def load_schema(path: str | os.PathLike[str] = SCHEMA_PATH) -> dict[str, Any]:
    """Read the config JSON Schema (YAML)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"config schema {p} not found; run from a checkout of the repository "
            f"(install with `pip install -e .`)"
        )
    with open(p, encoding="utf-8") as fh:
        schema: dict[str, Any] = yaml.safe_load(fh)
    return schema


def _with_defaults(validator_class: type) -> type:
    validate_properties = validator_class.VALIDATORS["properties"]  # type: ignore[attr-defined]

    def set_defaults(validator: Any, properties: Mapping[str, Any], instance: Any, schema: Any) -> Iterator[ValidationError]:
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(prop, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def _key(error: ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def _describe(error: ValidationError) -> str:
    """One actionable line for one schema violation."""
    key = _key(error)
    schema = error.schema if isinstance(error.schema, dict) else {}
    kind = error.validator
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        lines = []
        for name in extra:
            hint = difflib.get_close_matches(name, allowed, n=1)
            did = f"; did you mean '{hint[0]}'?" if hint else ""
            where = f"'{key}.{name}'" if key != "<top level>" else f"'{name}'"
            lines.append(f"unknown config key {where}{did} (allowed keys: {', '.join(allowed)})")
        return "\n".join(lines) or f"config key '{key}': {error.message}"
    if kind == "enum":
        allowed = ", ".join(json.dumps(v) for v in error.validator_value)
        return f"config key '{key}': {json.dumps(error.instance)} is not allowed (allowed values: {allowed})"
    if kind == "type":
        return (f"config key '{key}': expected {error.validator_value}, got "
                f"{type(error.instance).__name__} {json.dumps(error.instance, default=str)}")
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        lo = schema.get("minimum", schema.get("exclusiveMinimum", "-inf"))
        hi = schema.get("maximum", schema.get("exclusiveMaximum", "inf"))
        return (f"config key '{key}': {error.instance} is out of range "
                f"(allowed: {lo} to {hi}{', exclusive' if 'exclusive' in kind else ''})")
    if kind == "required":
        return f"config key '{key}': {error.message}; add it (see workflow/schemas/config.schema.yaml)"
    if kind == "pattern":
        return f"config key '{key}': {json.dumps(error.instance)} does not match the format {error.validator_value}"
    if kind == "oneOf" and key.startswith("aois."):
        return f"config key '{key}': give exactly one of 'bbox' ([min_lon, min_lat, max_lon, max_lat]) or 'geometry' (a vector file)"
    desc = schema.get("description")
    return f"config key '{key}': {error.message}" + (f" ({desc})" if desc else "")


def _non_finite(value: Any, key: str = "") -> Iterator[str]:
    """One line per key holding NaN or +-Inf (YAML ``.nan`` / ``.inf``): JSON Schema range
    checks let NaN through (every comparison with NaN is false)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield (f"config key '{key or '<top level>'}': {value} is not a finite number (YAML .nan / .inf are not "
               f"allowed); give a finite value (see workflow/schemas/config.schema.yaml)")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _non_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _non_finite(v, f"{key}.{i}" if key else str(i))


def _tiling_conflicts(config: Mapping[str, Any]) -> Iterator[str]:
    """One line per setting that a tiled run (``runtime.tiling.tile_size``) cannot honour: steps that
    see the whole map date at once (segmentation) would differ from tile to tile."""
    if ((config.get("runtime") or {}).get("tiling") or {}).get("tile_size") is None:
        return
    if (config.get("train") or {}).get("relearning") == "object":
        yield ("config key 'train.relearning': 'object' relearning segments whole dates, which a tiled run "
               "(runtime.tiling.tile_size) cannot do per tile; use 'pixel' or set runtime.tiling.tile_size: null")


def _period_problems(config: Mapping[str, Any]) -> Iterator[str]:
    """One line when ``cube.period`` is no period pandas can parse (names examples)."""
    from pipeline.timegrid.grid import parse_period  # pandas: imported only when there is a period

    period = (config.get("cube") or {}).get("period")
    if period is None:
        return
    try:
        parse_period(period)
    except ConfigError as exc:
        yield f"config key {exc}"


def _fill_unset(config: dict[str, Any], settings: Mapping[str, Any]) -> None:
    """Copy the keys of ``settings`` (nested mappings) that ``config`` does not hold into it."""
    for key, value in settings.items():
        if key not in config:
            config[key] = copy.deepcopy(value)
        elif isinstance(config[key], dict) and isinstance(value, Mapping):
            _fill_unset(config[key], value)


def apply_demo_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The demo's own settings (``demo.settings``: its offline stem, its 3-minute training budget,
    its sparse labels) under every key ``config`` leaves unset, when ``catalog.url`` is the demo's
    catalog folder (:data:`pipeline.stac.catalog_url.DEMO_CATALOG`, the default); modifies and
    returns ``config``.

    ``config.yaml`` is the base of every run (Snakemake merges a ``--configfile`` into it key by
    key), so a setting made for the demo at its place in ``config.yaml`` would also apply to a
    user's own data. Kept in ``demo.settings`` instead, it applies to the demo only, and a key the
    user sets (``--configfile``, ``--config``) wins over it. Other data get the schema's defaults.
    """
    demo = config.get("demo")
    settings = demo.get("settings") if isinstance(demo, dict) else None
    catalog = config.get("catalog")
    url = catalog.get("url", DEMO_CATALOG) if isinstance(catalog, dict) else DEMO_CATALOG
    if not isinstance(settings, dict):
        return config
    places = sorted(set(settings) & {"aois", "catalog", "demo"})
    if places:
        raise ConfigError(f"invalid configuration:\n  config key 'demo.settings' sets {', '.join(places)}: "
                          f"the demo's settings are settings of its run, not its place or data; "
                          f"set {', '.join(places)} at the top level instead")
    if isinstance(url, str) and is_demo_catalog(url):
        _fill_unset(config, settings)
    return config


def check_config(config: dict[str, Any], schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``config`` in place, filling defaults; raise :class:`ConfigError` listing every problem.

    A key at its place of the former flat layout (:data:`pipeline.plan.config_moves.MOVED_KEYS`)
    stops first, with its new place. The demo's settings apply first, for the demo's catalog
    only (:func:`apply_demo_settings`). Returns the same (now complete) dict for convenience.
    """
    moved = list(moved_key_problems(config))
    if moved:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(moved))
    apply_demo_settings(config)
    schema = dict(schema) if schema is not None else load_schema()
    validator = _with_defaults(Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    lines = [_describe(e) for e in errors] + list(_non_finite(config))
    if not lines:
        lines = list(_period_problems(config)) + list(_tiling_conflicts(config))
    if lines:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    return config


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file and validate it (defaults filled in)."""
    p = Path(path)
    try:
        with open(p, encoding="utf-8") as fh:
            config = yaml.safe_load(fh) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {p} not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    return check_config(config)


def parse_options(text: str | None, *, what: str) -> dict[str, Any]:
    """Parse a stage's ``--options`` JSON object (a config section) into a dict."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--options for {what} is not valid JSON ({exc}); pass one JSON object") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"--options for {what} must be a JSON object, got {type(value).__name__}")
    return value


def reject_unknown(options: Mapping[str, Any], allowed: set[str] | frozenset[str], *, section: str) -> None:
    """Raise :class:`ConfigError` for keys of ``options`` not in ``allowed`` (with a suggestion)."""
    for key in options:
        if key not in allowed:
            hint = difflib.get_close_matches(key, sorted(allowed), n=1)
            did = f"; did you mean '{hint[0]}'?" if hint else ""
            raise ConfigError(
                f"unknown config key '{section}.{key}'{did} (allowed keys: {', '.join(sorted(allowed))})"
            )


def command_line_aois(configfiles: Sequence[str | os.PathLike[str]] | None) -> dict[str, Any] | None:
    """The ``aois`` of the last of ``configfiles`` (Snakemake's ``--configfile`` list) that sets
    any, or None. Snakemake merges command-line config files into ``config.yaml`` key by key, which
    suits settings but not places: a user's ``my.yaml`` with its own AOI would also map the demo's.
    The workflow replaces the AOIs with these instead (raises ConfigError for an unreadable file)."""
    found = None
    for path in configfiles or ():
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the config file {path} ({exc}); check the --configfile path") from exc
        if isinstance(data, dict) and data.get("aois"):
            found = dict(data["aois"])
    return found
