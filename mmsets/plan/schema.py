"""JSON Schema mechanics for a configuration: its size bounded, dotted keys unfolded, mappings merged, defaults
filled, command-line strings coerced, and every violation reported as one ConfigError naming its key.

The schema's ``number`` is a finite number and its ``integer`` an int (not 40.0): NaN, infinities and integral
floats pass JSON Schema's own types, then fail inside a job.

Knows nothing of what the settings mean (that is ``mmsets.plan.config``); needs only PyYAML and jsonschema.
"""

from __future__ import annotations

import copy
import math
import reprlib
from typing import Any, Iterator

import jsonschema
import yaml

from mmsets.plan.errors import ConfigError
from mmsets.plan.spec import number_problem

# Values (mappings, lists and scalars, keys included) a configuration may hold, each YAML alias counted where it is
# used: the shipped config.yaml holds about 1,500. A YAML alias bomb (9 levels of 9 aliases) expands to 387 million
# values, which coercing and checking would walk (minutes, gigabytes), so it is refused before.
MAX_VALUES = 200_000


def _is_number(checker: Any, value: Any) -> bool:
    return number_problem(value, integral=False) is None


def _is_integer(checker: Any, value: Any) -> bool:
    return number_problem(value, integral=True) is None


Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many({"number": _is_number,
                                                                              "integer": _is_integer}))

def _short_repr() -> reprlib.Repr:
    """A value in one short line (Python 3.11's Repr takes no keywords)."""
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict, short.maxstring, short.maxother = 2, 3, 3, 40, 40
    return short


SHORT = _short_repr()


def invalid(*problems: str) -> ConfigError:
    """The error of an invalid configuration, one problem (``key: what is wrong``) per line."""
    return ConfigError("invalid configuration:\n" + "\n".join(f"  {problem}" for problem in problems))


def validated(config: dict, schema: dict) -> dict:
    """A copy of ``config`` with dotted keys unfolded, defaults filled and command-line strings parsed, checked
    against ``schema``."""
    check_size(config)
    config = unfold_dotted(copy.deepcopy(config))
    fill_defaults(config, schema)
    coerce_command_line_strings(config, schema)
    check(schema, config)
    return config


def check_size(config: dict, limit: int = MAX_VALUES) -> None:
    """Refuse a configuration of more than ``limit`` values, naming the top-level key it overflows in; a walk of
    ``limit`` steps at most, so an alias bomb (or a reference cycle) fails in well under a second."""
    budget = limit
    for key, value in config.items():
        for _ in _values(value):
            budget -= 1
            if budget < 0:
                raise invalid(f"{key}: the configuration holds more than {limit} values (YAML aliases counted where "
                              f"they are used): an alias bomb, or data that belongs in a file of its own")


def _values(node: Any) -> Iterator[Any]:
    """Every value under ``node`` (itself, keys, items), depth first, without recursion."""
    stack = [node]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)


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
        if condition is None or Validator(condition).is_valid(instance):
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
    for error in Validator(schema).iter_errors(config):
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
    errors = sorted(Validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        raise invalid(*(f"{_key(e, prefix)}: {_describe(e)}" for e in errors))


def _key(error: jsonschema.ValidationError, prefix: str) -> str:
    path = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    return prefix + path if error.absolute_path else prefix.rstrip(".") or path


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown key(s)")
    if error.validator == "type":
        return _type_problem(error.instance, error.validator_value)
    if error.validator == "enum":
        return f"{SHORT.repr(error.instance)} is not one of {error.validator_value}"
    if error.validator == "pattern" and error.schema.get("description"):
        return f"{SHORT.repr(error.instance)} is not {error.schema['description']}"
    shown = repr(error.instance)
    if error.message.startswith(shown):  # jsonschema's own messages quote the whole value first
        return SHORT.repr(error.instance) + error.message[len(shown):]
    return error.message


def _type_problem(value: Any, expected: str | list[str]) -> str:
    """Why ``value`` is not of the ``expected`` type(s), a NaN or an infinity named as such, an integral float
    (40.0 for an integer) with what to write."""
    expected = [expected] if isinstance(expected, str) else list(expected)
    message = f"{SHORT.repr(value)} is not of type {', '.join(repr(t) for t in expected)}"
    if not isinstance(value, float) or not {"number", "integer"} & set(expected):
        return message
    if not math.isfinite(value):
        return f"{value!r} is not a finite number"
    return message + (f" (write {int(value)})" if value.is_integer() else "")
