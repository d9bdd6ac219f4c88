"""Workflow configuration: schema validation with defaults, a dataset's overrides merged over the top level.

Imported by the Snakefile, so it needs nothing heavier than PyYAML and jsonschema. The schema
(workflow/schemas/config.schema.yaml) documents every key and its default; the tests check that its
defaults are those of the dataclasses the settings end up in.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mmsets.plan.families import FAMILIES, SEQUENCE
from mmsets.plan.errors import ConfigError, ParamsError, SpecError
from mmsets.plan.spec import RunSpec, expand_runs


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
    # A dataset's overrides are checked merged over the top-level settings they override.
    for section in OVERRIDABLE:
        section_schema = {**schema["properties"][section], "$defs": schema.get("$defs", {})}
        for name, dataset in config["datasets"].items():
            if dataset.get(section):
                merged = _merge(config[section], dataset[section])
                _fill_defaults(merged, section_schema)
                _raise_errors(jsonschema.Draft202012Validator(section_schema), merged, f"datasets.{name}.{section}.")
    _check_variants(config, schema)
    _check_extractor_variants(config, schema)
    _check_shards(config)
    _check_runs(config)
    return config


OVERRIDABLE = ("extractors", "training", "models", "shards")


def _check_variants(config: dict, schema: dict) -> None:
    """A variant's settings are those of the family it runs: checked against that family's schema."""
    families = schema["properties"]["models"]["properties"]
    for group, exp in config["experiments"].items():
        for variant, overrides in (exp.get("variants") or {}).items():
            model = overrides.get("model", exp["model"])
            family_schema = {**families[model], "$defs": schema.get("$defs", {})}
            settings = {k: v for k, v in overrides.items() if k != "model"}
            _raise_errors(jsonschema.Draft202012Validator(family_schema), settings,
                          f"experiments.{group}.variants.{variant}.")


def _check_runs(config: dict) -> None:
    """Every dataset's runs expand (a wrong group name or cv setting fails here, before any job), and
    read stores the dataset configures (an extractor variant must be named under extractors)."""
    for dataset in config["datasets"]:
        configured = configured_extractors(config, dataset)
        for run in dataset_runs(config, dataset).values():
            if config["experiments"][run.group].get("erasure"):
                _check_erasure(config, dataset, run)
            if run.settings.get("finetune_layers"):
                _check_finetune(config, dataset, run)
            missing = [f for f in run.features if f not in configured]
            if missing:
                raise ConfigError(f"invalid configuration:\n  experiments.{run.group}.features.{run.combination}: "
                                  f"{missing} not configured for dataset {dataset!r} (extractors: {configured})")


def _check_erasure(config: dict, dataset: str, run: RunSpec) -> None:
    where = f"invalid configuration:\n  experiments.{run.group}.erasure: "
    if FAMILIES[run.model].inputs != SEQUENCE:
        raise ConfigError(f"{where}modality erasure re-encodes token sequences; {run.model} does not read them")
    if config["datasets"][dataset].get("cv"):
        raise ConfigError(f"{where}scores the test split; dataset {dataset!r} uses k-fold cross-validation")
    if run.features[0] in configured_extractors(config, dataset):
        modalities = extractor_settings(config, dataset, run.features[0]).get("modalities", [])
        if len(modalities) < 2:
            raise ConfigError(f"{where}{run.features[0]} has one modality ({modalities}): nothing is left without it")


def _check_finetune(config: dict, dataset: str, run: RunSpec) -> None:
    """finetune_layers k trains from states below the top k layers: the token store's layer must be -(k+1)."""
    k = run.settings["finetune_layers"]
    layer = extractor_settings(config, dataset, run.features[0]).get("layer", -1)
    if layer < 0 and layer != -(k + 1):
        raise ConfigError(f"invalid configuration:\n  experiments.{run.group}: finetune_layers {k} trains the "
                          f"encoder's last {k} layers from the states below them: {run.features[0]} needs "
                          f"layer: {-(k + 1)} (it has {layer})")


def _raise_errors(validator: jsonschema.Draft202012Validator, instance: dict, prefix: str = "") -> None:
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {(prefix + _key_path(e)) if e.absolute_path else (prefix.rstrip('.') or _key_path(e))}: "
                 f"{_describe(e)}" for e in errors]
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
    if error.validator == "pattern" and error.schema.get("description"):
        return f"{error.instance!r} is not {error.schema['description']}"
    return error.message


def _check_extractor_variants(config: dict, schema: dict) -> None:
    """A variant ("ocr@easyocr") is its extractor's settings with its own over them: checked merged."""
    from mmsets.plan.extractors import split_variant

    known = schema["properties"]["extractors"]["properties"]
    places = [("extractors.", config["extractors"])] + [
        (f"datasets.{name}.extractors.", d.get("extractors") or {}) for name, d in config["datasets"].items()]
    for prefix, section in places:
        for name in section:
            try:
                base, variant = split_variant(name)
            except ParamsError as err:
                raise ConfigError(f"invalid configuration:\n  {prefix}{name}: {err}") from None
            if variant is None:
                continue
            if base not in known:
                raise ConfigError(f"invalid configuration:\n  {prefix}{name}: {base!r} is not an extractor "
                                  f"(one of {sorted(known)})")
    for dataset in config["datasets"]:
        section = dataset_section(config, dataset, "extractors")
        for name in section:
            base, variant = split_variant(name)
            if variant is not None:
                merged = extractor_settings(config, dataset, name)
                where = "extractors." if name in config["extractors"] else f"datasets.{dataset}.extractors."
                _raise_errors(jsonschema.Draft202012Validator({**known[base], "$defs": schema.get("$defs", {})}),
                              merged, f"{where}{name}.")


def _check_shards(config: dict) -> None:
    """Shards name an extractor the dataset configures, one whose items can be split."""
    from mmsets.extract.shards import check_shardable

    for dataset in config["datasets"]:
        known = configured_extractors(config, dataset)
        for name, count in dataset_section(config, dataset, "shards").items():
            where = "shards." if name in config["shards"] else f"datasets.{dataset}.shards."
            if name not in known:
                raise ConfigError(f"invalid configuration:\n  {where}{name}: not an extractor of dataset "
                                  f"{dataset!r} (one of {sorted(known)})")
            if count > 1:
                try:
                    check_shardable(name)
                except ParamsError as err:
                    raise ConfigError(f"invalid configuration:\n  {where}{name}: {err}") from None


def extractor_shards(config: dict, dataset: str, name: str) -> int:
    """How many shards extractor ``name`` runs in for ``dataset`` (1: one job, no gather)."""
    return int(dataset_section(config, dataset, "shards").get(name, 1))


def extractor_settings(config: dict, dataset: str, name: str) -> dict:
    """Extractor ``name``'s settings for ``dataset``; a variant's are its extractor's with its own over them."""
    from mmsets.plan.extractors import split_variant

    section = dataset_section(config, dataset, "extractors")
    if name not in section:
        raise ConfigError(f"extractors.{name}: no such extractor in the config")
    base, variant = split_variant(name)
    return section[name] if variant is None else _merge(section[base], section[name])


def configured_extractors(config: dict, dataset: str) -> list[str]:
    """Every extractor and extractor variant the dataset's settings name."""
    return list(dataset_section(config, dataset, "extractors"))


def dataset_section(config: dict, dataset: str, section: str) -> dict:
    """Top-level ``section`` (training, models) with the dataset's own overrides merged over it."""
    if dataset not in config["datasets"]:
        raise ConfigError(f"datasets.{dataset}: no such dataset in the config")
    return _merge(config.get(section, {}), config["datasets"][dataset].get(section, {}))


def family_training(config: dict, dataset: str, family: str) -> dict:
    """The training recipe of ``family``'s runs on ``dataset``, the more specific over the more general:
    top-level keys < the family's paper recipe (the registry) < top-level ``training.families.<family>``
    < the dataset's own keys < the dataset's ``training.families.<family>``."""
    if dataset not in config["datasets"]:
        raise ConfigError(f"datasets.{dataset}: no such dataset in the config")
    recipe = FAMILIES[family].recipe if family in FAMILIES else {}
    top, own = config.get("training", {}), config["datasets"][dataset].get("training", {})

    def keys(section: dict) -> dict:
        return {k: v for k, v in section.items() if k != "families"}

    def of_family(section: dict) -> dict:
        return section.get("families", {}).get(family, {})

    return {**keys(top), **recipe, **of_family(top), **keys(own), **of_family(own)}


def dataset_runs(config: dict, dataset: str) -> dict[str, RunSpec]:
    """The runs of a dataset in a validated config, by name (``mmsets.plan.spec.expand_runs``)."""
    selected = config["datasets"][dataset].get("experiments") or list(config["experiments"])
    try:
        return expand_runs(config["experiments"], selected, lambda family: family_training(config, dataset, family),
                           dataset_section(config, dataset, "models"), config["datasets"][dataset].get("cv"))
    except (SpecError, TypeError) as err:
        raise ConfigError(f"datasets.{dataset}: {err}") from err
