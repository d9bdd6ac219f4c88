from pathlib import Path

import pytest
import yaml

from mmsets.config import ConfigError, expand_runs, unfold_dotted, validate_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def _config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_shipped_config_is_valid_and_gets_defaults():
    config = validate_config(_config(), SCHEMA)
    assert config["extractors"]["image"]["dtype"] == "float16"
    assert config["datasets"]["demo"]["image_size"] == 160
    assert config["datasets"]["mmimdb"]["url"].endswith("mmimdb.tar.gz")


def test_dotted_keys_are_nested():
    assert unfold_dotted({"datasets.mmimdb.root": "x", "a": {"b.c": 1}}) == {
        "datasets": {"mmimdb": {"root": "x"}}, "a": {"b": {"c": 1}}}


@pytest.mark.parametrize("path, value, key", [
    (("training", "lr"), -1, "training.lr"),
    (("extractors", "text", "pooling"), "median", "extractors.text.pooling"),
    (("extractors", "text", "poolin"), "cls", "extractors.text"),
    (("datasets", "demo", "n_items"), "many", "datasets.demo.n_items"),
    (("datasets", "mmimdb", "sha256"), "abc", "datasets.mmimdb.sha256"),
    (("experiments", "dmms", "pooling"), ["median"], "experiments.dmms.pooling.0"),
])
def test_bad_value_names_the_key(path, value, key):
    config = _config()
    node = config
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    assert f"  {key}:" in str(err.value)


def test_runs_expand_features_pooling_seeds_with_dataset_overrides():
    config = validate_config(_config(), SCHEMA)
    config["experiments"]["dmms"]["seeds"] = [0, 1]
    runs = expand_runs(config, "demo")
    assert len(runs) == 3 * 4 * 2
    spec = runs["dmms-image_text-max-s1"]
    assert spec["features"] == ["image", "text"] and spec["pooling"] == "max"
    assert spec["training"]["seed"] == 1 and spec["training"]["epochs"] == 25
    assert spec["d_model"] == 256
    assert expand_runs(config, "mmimdb")["dmms-image-max-s0"]["d_model"] == 1024


def test_command_line_strings_become_numbers_where_numbers_are_expected():
    config = _config()
    config["training"] = {"lr": "0.01", "epochs": "5"}
    config["datasets"]["mmimdb"]["root"] = "123"
    config = validate_config(config, SCHEMA)
    assert config["training"]["lr"] == 0.01 and config["training"]["epochs"] == 5
    assert config["datasets"]["mmimdb"]["root"] == "123"


def test_variants_name_runs_and_may_switch_the_model():
    config = _config()
    config["datasets"]["mmimdb"].pop("experiments")
    config["experiments"] = {"dm2s2": {
        "model": "dm2s2", "features": {"tokens": ["tokens"]}, "seeds": [0, 1],
        "variants": {"both": {}, "dot": {"similarity": "dot"}, "encoder": {"model": "encoder_only"}}}}
    runs = expand_runs(validate_config(config, SCHEMA), "mmimdb")
    assert sorted(runs) == sorted(f"dm2s2-tokens-{v}-s{s}" for v in ("both", "dot", "encoder") for s in (0, 1))
    assert runs["dm2s2-tokens-dot-s1"]["similarity"] == "dot"
    assert runs["dm2s2-tokens-encoder-s0"]["model"] == "encoder_only"
    assert "pooling" not in runs["dm2s2-tokens-both-s0"]


def test_dataset_extractor_overrides_are_validated_with_their_key():
    config = _config()
    config["datasets"]["parallel_demo"]["extractors"] = {"text": {"pooling": "median"}}
    with pytest.raises(ConfigError, match=r"datasets\.parallel_demo\.extractors\.text\.pooling"):
        validate_config(config, SCHEMA)


def test_cross_validation_reaches_the_run_spec():
    config = validate_config(_config(), SCHEMA)
    runs = expand_runs(config, "parallel_demo")
    assert all(spec["cv"] == {"folds": 5, "seed": 0, "dev_fraction": 0.1} for spec in runs.values())
    assert "cv" not in expand_runs(config, "demo")["dmms-image-max-s0"]
