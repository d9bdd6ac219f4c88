"""Workflow configuration: schema validation with defaults, and the expansion of experiments into runs.

Imported by the Snakefile, so it needs nothing heavier than PyYAML and jsonschema.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    pass


def unfold_dotted(config: dict) -> dict:
    """Turn ``{"datasets.mmimdb.root": x}`` (from ``snakemake --config a.b.c=x``) into nested keys."""
    out: dict = {}
    for key, value in config.items():
        if isinstance(value, dict):
            value = unfold_dotted(value)
        parts = key.split(".") if isinstance(key, str) else [key]
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key {key!r}: {part!r} is not a mapping")
        leaf = parts[-1]
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf] = _merge(node[leaf], value)
        else:
            node[leaf] = value
    return out


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _fill_defaults(instance: Any, schema: dict) -> None:
    """Set every ``default`` the schema gives for a missing key, recursing into present objects."""
    if not isinstance(instance, dict):
        return
    for sub in schema.get("allOf", []):
        condition = sub.get("if")
        if condition is None or jsonschema.Draft202012Validator(condition).is_valid(instance):
            _fill_defaults(instance, sub.get("then", sub))
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(value, extra)


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate_config(config: dict, schema_path: str | Path) -> dict:
    """Return a validated copy of ``config`` with defaults filled; raise ConfigError naming each bad key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    config = unfold_dotted(copy.deepcopy(config))
    _fill_defaults(config, schema)
    validator = jsonschema.Draft202012Validator(schema)
    _coerce_command_line_strings(config, validator)
    _raise_errors(validator, config)
    # A dataset's extractor overrides are checked merged over the top-level settings they override.
    extractors_schema = {**schema["properties"]["extractors"], "$defs": schema.get("$defs", {})}
    for name, dataset in config["datasets"].items():
        if dataset.get("extractors"):
            merged = _merge(config["extractors"], dataset["extractors"])
            _fill_defaults(merged, extractors_schema)
            _raise_errors(jsonschema.Draft202012Validator(extractors_schema), merged, f"datasets.{name}.extractors.")
    return config


def _raise_errors(validator: jsonschema.Draft202012Validator, instance: dict, prefix: str = "") -> None:
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {prefix}{_key_path(e)}: {_describe(e)}" for e in errors]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))


def _coerce_command_line_strings(config: dict, validator: jsonschema.Draft202012Validator) -> None:
    """``snakemake --config 'training={lr: 0.01}'`` passes nested values as strings: parse those a
    number, boolean or null is expected for, and only those."""
    for error in validator.iter_errors(config):
        if error.validator != "type" or not isinstance(error.instance, str) or not error.absolute_path:
            continue
        try:
            value = yaml.safe_load(error.instance)
        except yaml.YAMLError:
            continue
        if isinstance(value, (int, float, bool)) or value is None:
            *parents, leaf = error.absolute_path
            node = config
            for part in parents:
                node = node[part]
            node[leaf] = value


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown key(s)")
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {error.validator_value}"
    return error.message


def dataset_section(config: dict, dataset: str, section: str) -> dict:
    """Top-level ``section`` (training, models) with the dataset's own overrides merged over it."""
    if dataset not in config["datasets"]:
        raise ConfigError(f"datasets.{dataset}: no such dataset in the config")
    return _merge(config.get(section, {}), config["datasets"][dataset].get(section, {}))


def expand_runs(config: dict, dataset: str) -> dict[str, dict]:
    """All runs of a dataset: ``{run name: spec}``.

    A group's runs are its feature combinations x pooling types (DMMS only) x variants x seeds, named
    ``<group>-<combination>[-<pooling>][-<variant>]-s<seed>``.
    """
    training = dataset_section(config, dataset, "training")
    models = dataset_section(config, dataset, "models")
    runs = {}
    selected = config["datasets"][dataset].get("experiments") or list(config["experiments"])
    cv = config["datasets"][dataset].get("cv")
    for group in selected:
        if group not in config["experiments"]:
            raise ConfigError(f"datasets.{dataset}.experiments: no experiment group {group!r}")
        exp = config["experiments"][group]
        variants = exp.get("variants") or {"": {}}
        for combo, features in exp["features"].items():
            for variant, overrides in variants.items():
                model = overrides.get("model", exp["model"])
                settings = {**models.get(model, {}), **{k: v for k, v in overrides.items() if k != "model"}}
                for pooling in exp["pooling"] if model == "dmms" else [""]:
                    for seed in exp["seeds"]:
                        name = "-".join(p for p in (group, combo, pooling, variant, f"s{seed}") if p)
                        runs[name] = {
                            **({"cv": cv} if cv else {}),
                            "model": model,
                            "features": list(features),
                            **({"pooling": pooling} if pooling else {}),
                            **settings,
                            "training": {**training, "seed": seed},
                        }
    return runs
