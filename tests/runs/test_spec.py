"""Run specs: config.yaml's experiments expanded into runs, and the spec's JSON round trip."""

import pytest

from mmsets.plan.config import dataset_runs
from mmsets.plan.config import validate_config
from mmsets.plan.errors import SpecError
from mmsets.plan.spec import RunSpec, TrainConfig

def test_runs_expand_features_pooling_seeds_with_dataset_overrides(shipped_config, config_schema):
    config = validate_config(shipped_config, config_schema)
    config["experiments"]["dmms"]["seeds"] = [0, 1]
    runs = {name: spec for name, spec in dataset_runs(config, "demo").items() if spec.group == "dmms"}
    assert len(runs) == 3 * 4 * 2  # image, text, image_text; four poolings; two seeds
    spec = runs["dmms-image_text-max-s1"]
    assert spec.features == ["image", "text"] and spec.pooling == "max"
    assert spec.training.seed == 1 and spec.training.epochs == 25
    assert spec.settings["d_model"] == 256
    assert (spec.group, spec.combination, spec.variant, spec.seed) == ("dmms", "image_text", None, 1)
    assert spec.configuration == "dmms-image_text-max" and spec.name == "dmms-image_text-max-s1"
    assert dataset_runs(config, "mmimdb")["dmms-image-max-s0"].settings["d_model"] == 1024


def test_variants_name_runs_and_may_switch_the_model(shipped_config, config_schema):
    config = shipped_config
    config["datasets"] = {"mmimdb": {k: v for k, v in config["datasets"]["mmimdb"].items() if k != "experiments"}}
    config["experiments"] = {"dm2s2": {
        "model": "dm2s2", "features": {"tokens": ["tokens"]}, "seeds": [0, 1],
        "variants": {"both": {}, "dot": {"similarity": "dot"}, "encoder": {"model": "encoder_only"}}}}
    runs = dataset_runs(validate_config(config, config_schema), "mmimdb")
    assert sorted(runs) == sorted(f"dm2s2-tokens-{v}-s{s}" for v in ("both", "dot", "encoder") for s in (0, 1))
    assert runs["dm2s2-tokens-dot-s1"].settings["similarity"] == "dot"
    assert runs["dm2s2-tokens-encoder-s0"].model == "encoder_only"
    both = runs["dm2s2-tokens-both-s0"]
    assert both.settings["pooling"] == "mean" and both.configuration == "dm2s2-tokens-both"  # not in the name
    assert (both.group, both.combination, both.variant) == ("dm2s2", "tokens", "both")


def test_cross_validation_reaches_the_run_spec(shipped_config, config_schema):
    config = validate_config(shipped_config, config_schema)
    runs = dataset_runs(config, "parallel_demo")
    assert all(spec.to_dict()["cv"] == {"folds": 5, "seed": 0, "dev_fraction": 0.1} for spec in runs.values())
    assert "cv" not in dataset_runs(config, "demo")["dmms-image-max-s0"].to_dict()


def test_spec_round_trips_through_its_json_form(shipped_config, config_schema):
    config = validate_config(shipped_config, config_schema)
    for spec in [*dataset_runs(config, "mmimdb").values(), *dataset_runs(config, "parallel_demo").values()]:
        again = RunSpec.from_dict(spec.to_dict())
        assert again == spec and again.name == spec.name


def test_spec_errors_name_the_key():
    with pytest.raises(SpecError, match="'training.epoch' is not known"):
        RunSpec.from_dict({"model": "dmms", "features": ["a"], "training": {"epoch": 3}})
    with pytest.raises(SpecError, match="'features': 'b' has no feature store"):
        RunSpec.from_dict({"features": ["b"]}, available=["a"])
    with pytest.raises(SpecError, match="cv.folds"):
        RunSpec.from_dict({"features": ["a"], "cv": {"folds": 1}})
    with pytest.raises(SpecError, match="class_weighting"):
        TrainConfig(class_weighting="sqrt")
