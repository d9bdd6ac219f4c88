"""The family registry and the workflow's schema agree: one set of settings, one set of defaults."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from mmsets.plan.families import FAMILIES, family
from mmsets.plan.spec import RUNTIME_TRAINING_KEYS, TrainConfig

SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[2] / "workflow/schemas/config.schema.yaml").read_text())
# Settings a run spec fills in from elsewhere in config.yaml, not from models.<family>.
FROM_EXPERIMENTS = {"dmms": {"pooling"}}  # experiments.<group>.pooling


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _defaults(cls, skip=()):
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out[f.name] = _plain(default)
    return out


def test_schema_names_every_family():
    assert sorted(SCHEMA["$defs"]["model"]["enum"]) == sorted(FAMILIES)
    assert sorted(SCHEMA["properties"]["models"]["properties"]) == sorted(FAMILIES)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_schema_settings_and_defaults_are_the_config_dataclass(name):
    fam = family(name)
    schema = SCHEMA["properties"]["models"]["properties"][name]
    assert schema.get("additionalProperties") is False  # a misspelled key fails when the DAG is built
    data_given = {f.name for f in dataclasses.fields(fam.config)} - set(fam.settings)
    expected = _defaults(fam.config, skip=data_given | FROM_EXPERIMENTS.get(name, set()))
    assert {key: _plain(prop.get("default")) for key, prop in schema["properties"].items()} == expected


def test_training_schema_is_the_train_config():
    schema = SCHEMA["properties"]["training"]
    assert schema.get("additionalProperties") is False
    expected = _defaults(TrainConfig, skip=RUNTIME_TRAINING_KEYS)
    assert {key: prop.get("default") for key, prop in schema["properties"].items() if key != "families"} == expected
    assert set(schema["properties"]["families"]["propertyNames"]["enum"]) == set(FAMILIES)


def test_registry_builds_each_family_from_its_settings():
    for name, fam in FAMILIES.items():
        fam.check({}, ["a", "b"])  # defaults alone make a valid config
        with pytest.raises(TypeError):
            fam.check({"no_such_setting": 1}, ["a", "b"])
    with pytest.raises(ValueError, match="is not one of"):
        family("dmmss")


def test_every_family_says_how_it_reads_a_missing_modality():
    """The report shows it beside each family's scores without a modality (mmsets.report.robustness)."""
    for name, fam in FAMILIES.items():
        assert fam.missing.strip(), name
    assert "presence flag" in family("late_fusion").missing and "element count" in family("logreg").missing


def _data(fam):
    if fam.inputs == "sequence":
        return {"hidden_size": 8, "n_modalities": 2, "n_classes": 3}
    return {"input_dims": {"a": 3, "b": 3}, "n_classes": 3}


@pytest.mark.parametrize("name", [n for n, f in FAMILIES.items() if f.resources.gpu])
def test_a_trained_family_gives_the_loop_its_groups_and_output_layer(name):
    from torch import nn

    fam = family(name)
    model = fam.build(**_data(fam), **({"d_model": 3} if name in ("dmms", "gmu") else {}))
    last = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == 3][-1]
    assert model.output_layer is last  # the head's last layer, even where another layer has as many outputs
    groups = model.param_groups(1e-3, 0.1)
    params = [p for g in groups for p in g["params"]]
    assert len({id(p) for p in params}) == len(params) == sum(1 for p in model.parameters() if p.requires_grad)
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(1e-3, 0.1), (1e-3, 0.0)]
    assert all(p.dim() >= 2 for p in groups[0]["params"]) and all(p.dim() < 2 for p in groups[1]["params"])
    again = fam.build(model.config, n_classes=2)  # a config, its fields replaced by keywords
    assert again.config.n_classes == 2 and model.config.n_classes == 3 and isinstance(again, type(model))
