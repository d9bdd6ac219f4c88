"""JSON Schema mechanics for a configuration: dotted keys unfolded, mappings merged, defaults filled, command-line
strings coerced, and every violation reported as one ConfigError naming its key.

Knows nothing of what the settings mean (that is ``mmsets.plan.config``); needs only PyYAML and jsonschema.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import yaml

from mmsets.plan.errors import ConfigError


def invalid(*problems: str) -> ConfigError:
    """The error of an invalid configuration, one problem (``key: what is wrong``) per line."""
    return ConfigError("invalid configuration:\n" + "\n".join(f"  {problem}" for problem in problems))


def validated(config: dict, schema: dict) -> dict:
    """A copy of ``config`` with dotted keys unfolded, defaults filled and command-line strings parsed, checked
    against ``schema``."""
    config = unfold_dotted(copy.deepcopy(config))
    fill_defaults(config, schema)
    coerce_command_line_strings(config, schema)
    check(schema, config)
    return config


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
            node[leaf] = merge(node[leaf], value)
        else:
            node[leaf] = value
    return out


def merge(base: dict, update: dict) -> dict:
    """``update`` over ``base``, mappings merged key by key at every depth (neither is changed)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def fill_defaults(instance: Any, schema: dict) -> None:
    """Set every ``default`` the schema gives for a missing key, recursing into present objects."""
    if not isinstance(instance, dict):
        return
    for sub in schema.get("allOf", []):
        condition = sub.get("if")
        if condition is None or jsonschema.Draft202012Validator(condition).is_valid(instance):
            fill_defaults(instance, sub.get("then", sub))
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            fill_defaults(instance[key], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                fill_defaults(value, extra)


def coerce_command_line_strings(config: dict, schema: dict) -> None:
    """``snakemake --config 'training={lr: 0.01}'`` passes nested values as strings: parse those a
    number, boolean or null is expected for, and only those."""
    for error in jsonschema.Draft202012Validator(schema).iter_errors(config):
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


def subschema(schema: dict, part: dict) -> dict:
    """``part`` of ``schema`` as a schema of its own (its ``$ref``s still resolve)."""
    return {**part, "$defs": schema.get("$defs", {})}


def check(schema: dict, instance: dict, prefix: str = "") -> None:
    """Raise the ``invalid`` error listing every violation of ``schema``, each named by its key (``prefix`` first:
    where ``instance`` sits in the whole configuration)."""
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        raise invalid(*(f"{_key(e, prefix)}: {_describe(e)}" for e in errors))


def _key(error: jsonschema.ValidationError, prefix: str) -> str:
    path = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    return prefix + path if error.absolute_path else prefix.rstrip(".") or path


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown key(s)")
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {error.validator_value}"
    if error.validator == "pattern" and error.schema.get("description"):
        return f"{error.instance!r} is not {error.schema['description']}"
    return error.message
