"""The plan of a tuned group (mmsets.plan.tuning): its space checked key by key, its searches and tuned runs."""

import copy

import pytest

from mmsets.plan.config import dataset_runs, dataset_searches, validate_config
from mmsets.plan.errors import ConfigError

SPACE = {"d_model": {"low": 16, "high": 256, "log": True}, "dropout": {"low": 0.0, "high": 0.5},
         "lr": {"low": 1e-4, "high": 1e-2, "log": True}, "weight_decay": {"low": 1e-4, "high": 0.1, "log": True},
         "epochs": {"low": 5, "high": 30}, "pooling": {"choices": ["max", "sum", "mean"]}}


def _config(shipped_config, space):
    config = copy.deepcopy(shipped_config)
    config["experiments"]["dmms"]["tune"] = {"space": space, "trials": 30}
    return config


def test_a_tuned_group_gets_one_search_per_combination_and_tuned_runs_per_seed(shipped_config, config_schema):
    config = validate_config(_config(shipped_config, SPACE), config_schema)
    searches = dataset_searches(config, "demo")
    runs = dataset_runs(config, "demo")
    seeds = config["experiments"]["dmms"]["seeds"]
    for name, search in searches.items():
        assert search.run.seed == seeds[0] and "pooling" not in search.run.settings  # pooling is searched
        assert search.tuned_runs == [f"{name}-tuned-s{s}" for s in seeds]
        assert all(run in runs for run in search.tuned_runs + search.untuned_runs)
    assert config["experiments"]["dmms"]["tune"]["pruner"] == {"startup_trials": 5, "warmup_epochs": 1}


@pytest.mark.parametrize("space, key", [
    ({"d_modle": {"low": 1, "high": 2}}, "experiments.dmms.tune.space.d_modle"),
    ({"dropout": {"low": 0.0, "high": 1.5}}, "experiments.dmms.tune.space.dropout.high"),
    ({"pooling": {"choices": ["max", "median"]}}, "experiments.dmms.tune.space.pooling.choices.1"),
    ({"lr": {"low": 1e-3}}, "experiments.dmms.tune.space.lr"),
])
def test_a_bad_space_fails_validation_naming_the_key(shipped_config, config_schema, space, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(_config(shipped_config, space), config_schema)
