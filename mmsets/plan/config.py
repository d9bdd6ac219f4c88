"""Workflow configuration: config.yaml validated (``mmsets.plan.schema``) and checked for what its schema cannot
say, and the look-ups the workflow plans with: a dataset's runs, extractors, their settings and shards.

Imported by the Snakefile, so it needs nothing heavier than PyYAML and jsonschema. The schema
(workflow/schemas/config.schema.yaml) documents every key and its default; the tests check that its
defaults are those of the dataclasses the settings end up in. A dataset's overrides are merged over the top level.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from mmsets.listing import listed
from mmsets.plan.errors import ConfigError, ParamsError, SpecError
from mmsets.plan.extractors import extractor, split_variant
from mmsets.plan.families import FAMILIES, SEQUENCE
from mmsets.plan.schema import check, coerce_command_line_strings, fill_defaults, invalid, merge, subschema, validated
from mmsets.plan.ensembles import ENSEMBLE, EnsembleSpec, expand_ensembles
from mmsets.plan.spec import DMMS, RunSpec, expand_runs
from mmsets.plan.tables import field_defaults, lacking
from mmsets.plan.tuning import POOLING, SearchSpec, check_space, expand_tuning

OVERRIDABLE = ("extractors", "training", "models", "shards")  # the sections a dataset may override


def validate_config(config: dict, schema_path: str | Path) -> dict:
    """Return a validated copy of ``config`` with defaults filled; raise ConfigError naming each bad key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    config = validated(config, schema)
    _check_overrides(config, schema)
    _check_variants(config, schema)
    _check_tune(config, schema)
    _check_extractor_variants(config, schema)
    _check_shards(config)
    _check_runs(config)
    return config


def _check_overrides(config: dict, schema: dict) -> None:
    """A dataset's overrides are checked merged over the top-level settings they override, their command-line
    strings (``--config 'datasets={d: {training: {epochs: 3}}}'``) parsed as the top level's are."""
    for section in OVERRIDABLE:
        section_schema = subschema(schema, schema["properties"][section])
        for name, dataset in config["datasets"].items():
            if dataset.get(section):
                coerce_command_line_strings(dataset[section], section_schema)
                merged = merge(config[section], dataset[section])
                fill_defaults(merged, section_schema)
                check(section_schema, merged, f"datasets.{name}.{section}.")


def _check_variants(config: dict, schema: dict) -> None:
    """A variant's settings are those of the family it runs: checked against that family's schema."""
    families = schema["properties"]["models"]["properties"]
    for group, exp in config["experiments"].items():
        for variant, overrides in (exp.get("variants") or {}).items():
            model = overrides.get("model", exp["model"])
            settings = {k: v for k, v in overrides.items() if k != "model"}
            coerce_command_line_strings(settings, subschema(schema, families[model]))
            overrides.update(settings)
            check(subschema(schema, families[model]), settings, f"experiments.{group}.variants.{variant}.")


def _check_tune(config: dict, schema: dict) -> None:
    """A search space names settings of the family each configuration of its group runs, or training keys; its
    bounds and choices are values that setting's schema allows."""
    families = schema["properties"]["models"]["properties"]
    training = schema["properties"]["training"]["properties"]
    for group, exp in config["experiments"].items():
        space = (exp.get("tune") or {}).get("space") or {}
        models = {exp["model"], *(v.get("model", exp["model"]) for v in (exp.get("variants") or {}).values())}
        for model in sorted(models & set(families)):
            where = f"experiments.{group}.tune"
            own = dict(families[model]["properties"])
            if model == DMMS:  # a DMMS group's pooling types are its own key, not a model setting
                own[POOLING] = {"$ref": "#/$defs/pooling"}
            try:
                check_space(space, model, list(own), where)
            except SpecError as err:
                raise invalid(str(err)) from None
            for key, dimension in space.items():
                setting = subschema(schema, own[key] if key in own else training[key])
                bounds = dimension.get("choices") or [dimension["low"], dimension["high"]]
                names = [f"choices.{k}" for k in range(len(bounds))] if "choices" in dimension else ["low", "high"]
                for name, value in zip(names, bounds):
                    check(setting, value, f"{where}.space.{key}.{name}.")
        if space and models - set(families):
            raise invalid(f"experiments.{group}.tune: {sorted(models - set(families))} train nothing to tune")


def _check_extractor_variants(config: dict, schema: dict) -> None:
    """A variant ("ocr@easyocr") is its extractor's settings with its own over them: checked merged."""
    known = schema["properties"]["extractors"]["properties"]
    places = [("extractors.", config["extractors"])] + [
        (f"datasets.{name}.extractors.", d.get("extractors") or {}) for name, d in config["datasets"].items()]
    for prefix, section in places:
        for name in section:
            try:
                base, variant = split_variant(name)
            except ParamsError as err:
                raise invalid(f"{prefix}{name}: {err}") from None
            if variant is not None and base not in known:
                raise invalid(f"{prefix}{name}: {base!r} is not an extractor (one of {sorted(known)})")
            if variant is not None:
                coerce_command_line_strings(section[name], subschema(schema, known[base]))
    for dataset in config["datasets"]:
        for name in dataset_section(config, dataset, "extractors"):
            base, variant = split_variant(name)
            if variant is not None:
                where = "extractors." if name in config["extractors"] else f"datasets.{dataset}.extractors."
                check(subschema(schema, known[base]), extractor_settings(config, dataset, name), f"{where}{name}.")


def _check_shards(config: dict) -> None:
    """Shards name an extractor the dataset configures, one whose items can be split."""
    for dataset in config["datasets"]:
        known = configured_extractors(config, dataset)
        for name, count in dataset_section(config, dataset, "shards").items():
            where = "shards." if name in config["shards"] else f"datasets.{dataset}.shards."
            if name not in known:
                raise invalid(f"{where}{name}: not an extractor of dataset {dataset!r} (one of {sorted(known)})")
            if count > 1:
                try:
                    extractor(name).check_shardable()
                except ParamsError as err:
                    raise invalid(f"{where}{name}: {err}") from None


def _check_runs(config: dict) -> None:
    """Every dataset's runs expand (a wrong group name or cv setting fails here, before any job), and
    read stores the dataset configures (an extractor variant must be named under extractors)."""
    for dataset in config["datasets"]:
        configured = configured_extractors(config, dataset)
        dataset_ensembles(config, dataset)
        for run in dataset_runs(config, dataset).values():
            if config["experiments"][run.group].get("erasure"):
                _check_erasure(config, dataset, run)
            if run.settings.get("finetune_layers"):
                _check_finetune(config, dataset, run)
            missing = [f for f in run.features if f not in configured]
            if missing:
                raise invalid(f"experiments.{run.group}.features.{run.combination}: {missing} not configured for "
                              f"dataset {dataset!r} (extractors: {configured})")
            for store in run.features:
                if needs := store_lacks(config, dataset, store):
                    raise invalid(f"experiments.{run.group}.features.{run.combination}: dataset {dataset!r} cannot "
                                  f"make store {store!r}: it lacks {', '.join(needs)}")


def _check_erasure(config: dict, dataset: str, run: RunSpec) -> None:
    where = f"experiments.{run.group}.erasure: "
    if FAMILIES[run.model].inputs != SEQUENCE:
        raise invalid(f"{where}modality erasure re-encodes token sequences; {run.model} does not read them")
    if dataset_settings(config, dataset).get("cv"):
        raise invalid(f"{where}scores the test split; dataset {dataset!r} uses k-fold cross-validation")
    if run.features[0] in configured_extractors(config, dataset):
        modalities = extractor(run.features[0]).modalities(extractor_settings(config, dataset, run.features[0]))
        if len(modalities) < 2:
            raise invalid(f"{where}{run.features[0]} has one modality ({modalities}): nothing is left without it")


def _check_finetune(config: dict, dataset: str, run: RunSpec) -> None:
    """finetune_layers k trains from states below the top k layers: the token store's layer must be -(k+1)."""
    k = run.settings["finetune_layers"]
    layer = extractor_settings(config, dataset, run.features[0]).get("layer", -1)
    if layer < 0 and layer != -(k + 1):
        raise invalid(f"experiments.{run.group}: finetune_layers {k} trains the encoder's last {k} layers from the "
                      f"states below them: {run.features[0]} needs layer: {-(k + 1)} (it has {layer})")


# ------------------------------------------------------------------------------- look-ups of a validated config

def dataset_section(config: dict, dataset: str, section: str) -> dict:
    """Top-level ``section`` (training, models) with the dataset's own overrides merged over it; a table's
    extractors follow its declared fields in between (``mmsets.plan.tables``)."""
    own = dataset_settings(config, dataset)
    top = config.get(section, {})
    if section == "extractors":
        top = merge(top, {k: v for k, v in field_defaults(own).items() if k in top})
    return merge(top, own.get(section, {}))


def store_lacks(config: dict, dataset: str, store: str) -> list[str]:
    """What the dataset lacks to make ``store`` (a table without an image column, a field it does not declare)."""
    return lacking(dataset_settings(config, dataset), store, lambda name: extractor_settings(config, dataset, name),
                   configured_extractors(config, dataset))


def configured_extractors(config: dict, dataset: str) -> list[str]:
    """Every extractor and extractor variant the dataset's settings name."""
    return list(dataset_section(config, dataset, "extractors"))


def extractor_settings(config: dict, dataset: str, name: str) -> dict:
    """Extractor ``name``'s settings for ``dataset``; a variant's are its extractor's with its own over them."""
    section = dataset_section(config, dataset, "extractors")
    if name not in section:
        raise ConfigError(f"extractors.{name}: no such extractor in the config")
    base, variant = split_variant(name)
    return section[name] if variant is None else merge(section[base], section[name])


def extractor_shards(config: dict, dataset: str, name: str) -> int:
    """How many shards extractor ``name`` runs in for ``dataset`` (1: one job, no gather)."""
    return int(dataset_section(config, dataset, "shards").get(name, 1))


def family_training(config: dict, dataset: str, family: str) -> dict:
    """The training recipe of ``family``'s runs on ``dataset``, the more specific over the more general:
    top-level keys < the family's paper recipe (the registry) < top-level ``training.families.<family>``
    < the dataset's own keys < the dataset's ``training.families.<family>``."""
    own = dataset_settings(config, dataset).get("training", {})
    recipe = FAMILIES[family].recipe if family in FAMILIES else {}
    top = config.get("training", {})

    def keys(section: dict) -> dict:
        return {k: v for k, v in section.items() if k != "families"}

    def of_family(section: dict) -> dict:
        return section.get("families", {}).get(family, {})

    return {**keys(top), **recipe, **of_family(top), **keys(own), **of_family(own)}


def _groups(config: dict, dataset: str) -> list[str]:
    return dataset_settings(config, dataset).get("experiments") or list(config["experiments"])


def dataset_runs(config: dict, dataset: str) -> dict[str, RunSpec]:
    """The runs of a dataset in a validated config, by name (``mmsets.plan.spec.expand_runs``)."""
    runs, tuned = _planned_runs(config, dataset)[::2]
    return {**runs, **tuned}


def dataset_searches(config: dict, dataset: str) -> dict[str, SearchSpec]:
    """The tuning searches of a dataset in a validated config, by name (``mmsets.plan.tuning``)."""
    return _planned_runs(config, dataset)[1]


def _planned_runs(config: dict, dataset: str) -> tuple[dict[str, RunSpec], dict[str, SearchSpec], dict[str, RunSpec]]:
    """The untuned runs, the searches and the tuned runs of a dataset."""
    trained = [g for g in _groups(config, dataset) if config["experiments"].get(g, {}).get("model") != ENSEMBLE]
    try:
        runs = expand_runs(_makeable(config, dataset, trained), trained,
                           lambda family: family_training(config, dataset, family),
                           dataset_section(config, dataset, "models"), dataset_settings(config, dataset).get("cv"))
        return (runs, *expand_tuning(config["experiments"], runs))
    except (SpecError, TypeError) as err:
        raise ConfigError(f"datasets.{dataset}: {err}") from err


def _makeable(config: dict, dataset: str, groups: list[str]) -> dict:
    """The experiments with the combinations that a ``skip_unavailable`` group cannot feed on this dataset left
    out (a store its fields cannot make), and those that are then the same stores as an earlier one."""
    experiments = dict(config["experiments"])
    for group in groups:
        exp = experiments.get(group)
        if not exp or not exp.get("skip_unavailable"):
            continue
        kept: dict[str, list[str]] = {}
        for combination, stores in exp["features"].items():
            made = [s for s in stores if s in configured_extractors(config, dataset)
                    and not store_lacks(config, dataset, s)]
            if made and made not in kept.values():
                kept[combination] = made
        if not kept:
            raise ConfigError(f"experiments.{group}: dataset {dataset!r} can make none of its stores")
        experiments[group] = {**exp, "features": kept}
    return experiments


def dataset_ensembles(config: dict, dataset: str) -> dict[str, EnsembleSpec]:
    """The ensembles of a dataset in a validated config, by name (``mmsets.plan.ensembles``)."""
    try:
        return expand_ensembles(config["experiments"], _groups(config, dataset), dataset_runs(config, dataset))
    except SpecError as err:
        raise ConfigError(f"datasets.{dataset}: {err}") from err


def dataset_settings(config: dict, dataset: str) -> dict:
    """The dataset's own settings (its overrides); a name the config lacks (a misspelt target,
    results/<dataset>/...) is refused naming the datasets it has."""
    if dataset not in config["datasets"]:
        raise ConfigError(f"no dataset {dataset!r} in the config (results/{dataset}/...): its datasets are "
                          f"{listed(config['datasets'], limit=20)}")
    return config["datasets"][dataset]

