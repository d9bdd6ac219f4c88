import json

import numpy as np
import optuna
import pandas as pd
import pytest

from mmsets.data.manifest import Manifest, read_manifest, write_manifest
from mmsets.plan.spec import RunSpec, TrainConfig
from mmsets.plan.tuning import SearchSpec, TuneConfig, apply_params
from mmsets.runs import tune as tuning
from mmsets.store import RaggedWriter

LABELS = ["p", "q"]
FAST = {"epochs": 3, "batch_size": 32, "lr": 1e-2, "warmup_epochs": 0}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Label k iff some element of the one store has x[k] > 1: learnable in a few epochs."""
    root = tmp_path_factory.mktemp("tune")
    rng = np.random.default_rng(0)
    ids, splits, labels = [], [], []
    with RaggedWriter(root / "signal.h5", extractor="signal", dim=4) as signal:
        for split, count in {"train": 160, "dev": 60, "test": 60}.items():
            for i in range(count):
                x = rng.normal(size=(int(rng.integers(1, 4)), 4))
                signal.add(f"{split}{i}", x)
                ids.append(f"{split}{i}")
                splits.append(split)
                labels.append([name for j, name in enumerate(LABELS) if x[:, j].max() > 1.0])
    frame = pd.DataFrame({"id": ids, "split": splits, "image": [None] * len(ids), "labels": labels})
    write_manifest(Manifest(frame, LABELS, dataset="synthetic"), root / "manifest.parquet")
    return root


def search_spec(trials=3, **tune):
    run = RunSpec("dmms", ["signal"], {"d_model": 16, "head_hidden": (16,), "pooling": "max"}, TrainConfig(**FAST),
                  group="dmms", combination="signal")
    space = tune.pop("space", {"lr": {"low": 1e-3, "high": 3e-2, "log": True}, "dropout": {"low": 0.0, "high": 0.5},
                               "head_hidden": {"choices": [[16], [8, 8]]}})
    return SearchSpec(run.configuration, run, TuneConfig(space, trials=trials, **tune), ["dmms-signal-max-tuned-s0"])


def run_search(root, out, spec):
    return tuning.search(root / "manifest.parquet", {"signal": root / "signal.h5"}, out / "search.json",
                         out / "search.db", spec.to_dict())


def test_a_search_writes_its_trials_and_best_settings(synthetic, tmp_path):
    result = run_search(synthetic, tmp_path, search_spec())
    assert json.loads((tmp_path / "search.json").read_text()) == json.loads(json.dumps(result))
    assert result["n_trials"] == 3 and len(result["trials"]) == 3 and result["metric"] == "f1_micro"
    best = max((t for t in result["trials"] if t["state"] == "complete"), key=lambda t: t["value"])
    assert result["best_value"] == best["value"] and result["best_params"] == best["params"]
    assert result["best_params"]["head_hidden"] in ([16], [8, 8])  # a list choice comes back as the list
    assert all(len(t["epochs"]) == 3 for t in result["trials"])  # the dev metric of every epoch
    tuned = apply_params(search_spec().run.to_dict(), result["best_params"])
    assert tuned["training"]["lr"] == result["best_params"]["lr"]
    assert tuned["dropout"] == result["best_params"]["dropout"]


def test_the_seeded_sampler_repeats_its_trials(synthetic, tmp_path):
    first = run_search(synthetic, tmp_path / "a", search_spec())
    again = run_search(synthetic, tmp_path / "b", search_spec())
    assert [t["params"] for t in first["trials"]] == [t["params"] for t in again["trials"]]
    assert [t["value"] for t in first["trials"]] == pytest.approx([t["value"] for t in again["trials"]])
    other = run_search(synthetic, tmp_path / "c", search_spec(seed=1))
    assert [t["params"] for t in other["trials"]] != [t["params"] for t in first["trials"]]


def test_an_interrupted_search_resumes_from_its_storage(synthetic, tmp_path):
    run_search(synthetic, tmp_path, search_spec(trials=2))  # the job stopped after two trials...
    study = optuna.load_study(study_name=tuning.study_name(search_spec()),
                              storage=tuning.storage_url(tmp_path / "search.db"))
    study.ask()  # ... with a third one running when it was killed
    result = run_search(synthetic, tmp_path, search_spec(trials=4))
    states = [t["state"] for t in result["trials"]]
    assert result["n_trials"] == 4 and states.count("fail") == 1 and len(states) == 5
    assert states[:2] == ["complete", "complete"]  # the first two were not trained again
    assert run_search(synthetic, tmp_path, search_spec(trials=4))["trials"] == result["trials"]  # budget spent
    changed = search_spec(trials=2, space={"lr": {"low": 1e-3, "high": 1e-2}})
    assert len(run_search(synthetic, tmp_path, changed)["trials"]) == 2  # another space: a study of its own


def test_a_bad_trial_is_pruned_on_its_epoch_history(synthetic, tmp_path):
    spec = search_spec(trials=3, space={"lr": {"low": 1e-9, "high": 3e-2, "log": True}},
                       pruner={"startup_trials": 2, "warmup_epochs": 0})
    study = tuning.open_study(tuning.study_name(spec), tmp_path / "search.db", spec.tune, minimise=False)
    for lr in (2e-2, 3e-2, 1e-9):  # two good trials, then one that cannot learn
        study.enqueue_trial({"lr": lr})
    result = run_search(synthetic, tmp_path, spec)
    states = [t["state"] for t in result["trials"]]
    assert states == ["complete", "complete", "pruned"] and result["n_trials"] == 3
    assert len(result["trials"][2]["epochs"]) < 3 and result["best_params"]["lr"] in (2e-2, 3e-2)


def test_kfold_objective_scores_folds_of_train_and_dev(synthetic, tmp_path):
    manifest = read_manifest(synthetic / "manifest.parquet")
    folds = tuning.tuning_folds(manifest, 3, 0)
    dev_ids = [set(m.frame.loc[m.frame["split"] == "dev", "id"]) for m in folds]
    assert set().union(*dev_ids) == set(manifest.frame.loc[manifest.frame["split"] != "test", "id"])
    assert sum(len(d) for d in dev_ids) == len(set().union(*dev_ids))  # every item in one dev fold
    result = run_search(synthetic, tmp_path, search_spec(trials=2, objective="kfold", folds=2))
    assert result["objective"] == "kfold" and result["folds"] == 2 and result["n_trials"] == 2
