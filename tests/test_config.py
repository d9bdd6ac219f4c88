from pathlib import Path

import pytest
import yaml

from mmsets.plan.config import ConfigError, configured_extractors, dataset_runs, extractor_settings, validate_config
from mmsets.plan.schema import unfold_dotted

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
    (("training", "select"), "balanced", "training.select"),
    (("tracking", "mlflow"), {"experiment": "mine"}, "tracking.mlflow"),
    (("tracking", "mlflow"), {"uri": ""}, "tracking.mlflow.uri"),
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


def test_the_schema_offers_every_selection_metric_of_every_task():
    from mmsets.tasks import MultiLabelTask, RegressionTask, SingleLabelTask

    schema = yaml.safe_load(SCHEMA.read_text())
    offered = schema["properties"]["training"]["properties"]["select"]["enum"]
    tasks = (MultiLabelTask, SingleLabelTask, RegressionTask)
    assert set(offered) == {"auto", "loss", *(m for task in tasks for m in task.select_metrics)}


def test_command_line_strings_become_numbers_where_numbers_are_expected():
    config = _config()
    config["training"] = {"lr": "0.01", "epochs": "5"}
    config["datasets"]["mmimdb"]["root"] = "123"
    config = validate_config(config, SCHEMA)
    assert config["training"]["lr"] == 0.01 and config["training"]["epochs"] == 5
    assert config["datasets"]["mmimdb"]["root"] == "123"


def test_a_datasets_command_line_numbers_are_parsed_like_the_top_levels():
    """``--config 'datasets={demo: {training: {epochs: 3}}}'`` hands every nested value over as a string."""
    config = _config()
    config["datasets"]["demo"]["training"] = {"epochs": "3", "lr": "0.01"}
    config["datasets"]["demo"]["models"] = {"dmms": {"d_model": "32", "dropout": "0.5"}}
    config["datasets"]["demo"]["extractors"]["text"] = {"max_length": "64"}
    config = validate_config(config, SCHEMA)
    assert config["datasets"]["demo"]["training"] == {"epochs": 3, "lr": 0.01}
    run = next(iter(dataset_runs(config, "demo").values()))
    assert run.training.epochs == 3 and run.training.lr == 0.01


def test_a_variants_command_line_numbers_are_parsed():
    config = _config()
    config["experiments"]["dmms"]["variants"] = {"wide": {"d_model": "64"}}
    config["extractors"]["ocr@sparse"] = {"psm": "6"}
    config = validate_config(config, SCHEMA)
    assert config["experiments"]["dmms"]["variants"]["wide"]["d_model"] == 64
    assert extractor_settings(config, "demo", "ocr@sparse")["psm"] == 6


def test_dataset_extractor_overrides_are_validated_with_their_key():
    config = _config()
    config["datasets"]["parallel_demo"]["extractors"] = {"text": {"pooling": "median"}}
    with pytest.raises(ConfigError, match=r"datasets\.parallel_demo\.extractors\.text\.pooling"):
        validate_config(config, SCHEMA)


@pytest.mark.parametrize("where, settings, message", [
    ("models", {"dm2s2": {"intra_atention": False}}, "models.dm2s2: unknown key(s) ('intra_atention'"),
    ("models", {"lightgbm": {"num_leaves": 1}}, "models.lightgbm.num_leaves: 1 is less than the minimum of 2"),
    ("training", {"selct": "auc"}, "training: unknown key(s) ('selct'"),
])
def test_misspelled_model_and_training_settings_fail_validation_naming_the_key(where, settings, message):
    config = _config()
    config[where] = {**config.get(where, {}), **settings}
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    assert message in str(err.value)


def test_dataset_model_overrides_and_variants_are_checked_against_their_family():
    config = _config()
    config["datasets"]["demo"]["models"] = {"dmms": {"d_modle": 8}}
    with pytest.raises(ConfigError, match=r"datasets\.demo\.models\.dmms: unknown key\(s\) \('d_modle'"):
        validate_config(config, SCHEMA)
    config = _config()
    config["experiments"]["dm2s2"]["variants"]["dot"] = {"similarity": "dott"}
    with pytest.raises(ConfigError, match=r"experiments\.dm2s2\.variants\.dot\.similarity: 'dott'"):
        validate_config(config, SCHEMA)
    config = _config()  # a variant that switches family is checked against the family it switches to
    config["experiments"]["baselines"]["variants"]["gmu"] = {"model": "gmu", "intra": True}
    with pytest.raises(ConfigError, match=r"experiments\.baselines\.variants\.gmu: unknown key\(s\) \('intra'"):
        validate_config(config, SCHEMA)


def test_training_is_the_dataset_over_the_family_over_the_top_level():
    config = _config()
    config["training"]["families"] = {"gmu": {"lr": 0.01}}
    config["datasets"]["mmimdb"]["training"] = {"epochs": 7}
    config["datasets"]["parallel_demo"]["training"]["families"] = {"dmms": {"epochs": 9}}
    config = validate_config(config, SCHEMA)
    runs = dataset_runs(config, "mmimdb")
    by_model = {run.model: run.training for run in runs.values()}
    assert by_model["dm2s2"].class_weighting == "inv"  # the DM2S2 paper's 1/N_k (the family's recipe)
    assert by_model["encoder_only"].class_weighting == "inv"
    assert by_model["dmms"].class_weighting == "inv_sqrt"  # the DMMS paper's
    assert by_model["gmu"].lr == 0.01 and by_model["dmms"].lr == 0.001
    assert {t.epochs for t in by_model.values()} == {7}
    table = {run.model: run.training for run in dataset_runs(config, "parallel_demo").values()}
    assert table["dmms"].epochs == 9 and table["gmu"].epochs == 60  # its family key over its own epochs: 60
    assert table["dmms"].class_weighting == "none"  # the dataset's own key wins over every family's


@pytest.mark.parametrize("families, key", [
    ({"dmmz": {"lr": 0.1}}, "training.families"),
    ({"dm2s2": {"lr": -1}}, "training.families.dm2s2"),
    ({"dm2s2": {"epochz": 3}}, "training.families.dm2s2"),
])
def test_family_training_keys_are_validated(families, key):
    config = _config()
    config["training"]["families"] = families
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(config, SCHEMA)


def test_extractor_variants_take_their_extractors_settings_under_their_own():
    config = _config()
    config["extractors"]["ocr@easyocr"] = {"backend": "easyocr"}
    config["extractors"]["ocr_text@easyocr"] = {}
    config["datasets"]["mmimdb"]["extractors"] = {"ocr": {"min_conf": 0.7}}
    config = validate_config(config, SCHEMA)
    settings = extractor_settings(config, "mmimdb", "ocr@easyocr")
    assert settings["backend"] == "easyocr" and settings["min_conf"] == 0.7  # the dataset's ocr settings too
    assert extractor_settings(config, "mmimdb", "ocr")["backend"] == "tesseract"
    assert "ocr@easyocr" in configured_extractors(config, "mmimdb")


@pytest.mark.parametrize("name, settings, message", [
    ("ocr@easyocr", {"backend": "paddle"}, r"extractors\.ocr@easyocr\.backend"),
    ("ocr@easyocr", {"backendd": "easyocr"}, r"extractors\.ocr@easyocr: unknown key"),
    ("orc@easyocr", {}, r"extractors\.orc@easyocr: 'orc' is not an extractor"),
    ("ocr@easy-ocr", {}, r"extractors: .ocr@easy-ocr. does not match"),
])
def test_bad_extractor_variants_are_named(name, settings, message):
    config = _config()
    config["extractors"][name] = settings
    with pytest.raises(ConfigError, match=message):
        validate_config(config, SCHEMA)


@pytest.mark.parametrize("change, message", [
    (lambda c: c["experiments"]["dmms"].update(erasure=True), "re-encodes token sequences"),
    (lambda c: (c["experiments"]["dm2s2"].update(erasure=True),
                c["datasets"]["mmimdb"].update(cv={"folds": 5})), "k-fold"),
    (lambda c: (c["experiments"]["dm2s2"].update(erasure=True),
                c["extractors"]["tokens"].update(modalities=["text:plot"])), "nothing is left"),
    (lambda c: c["experiments"]["dm2s2"]["variants"].update(top={"finetune_layers": 2}), "needs layer: -3"),
])
def test_analyses_that_cannot_run_fail_validation(change, message):
    config = _config()
    change(config)
    with pytest.raises(ConfigError, match=message):
        validate_config(config, SCHEMA)


@pytest.mark.parametrize("override, message", [
    ({"training": {"epochs": -1}}, "datasets.demo.training.epochs: -1 is less than the minimum of 1"),
    ({"training": {"epochz": 3}}, "datasets.demo.training: unknown key(s) ('epochz'"),
    ({"models": {"dmms": {"d_modle": 3}}}, "datasets.demo.models.dmms: unknown key(s) ('d_modle'"),
    ({"training": {"lr": "fast"}}, "datasets.demo.training.lr: 'fast' is not of type 'number'"),
    ({"training": {"epochs": 2.5}}, "datasets.demo.training.epochs: 2.5 is not of type 'integer'"),
    ({"training": {"families": {"dmms": {"epochs": 0}}}}, "datasets.demo.training.families.dmms.epochs: 0"),
    ({"extractors": {"image": {"model": "resnet50"}}}, "datasets.demo.extractors.image.model: 'resnet50' is not"),
])
def test_a_datasets_overrides_are_validated_naming_the_dataset_key(override, message):
    config = _config()
    config["datasets"]["demo"].update(override)
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    assert message in str(err.value)
