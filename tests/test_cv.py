import numpy as np
import pandas as pd
import pytest
import torch

from mmsets.cv import assign_folds, fold_manifest
from mmsets.data.manifest import Manifest
from mmsets.data.synthetic import write_synthetic_sets
from mmsets.runs.evaluate import evaluate_run
from mmsets.io import read_json
from mmsets.runs.checkpoint import load_checkpoint
from mmsets.runs.run import train_run
from mmsets.plan.errors import SpecError
from mmsets.plan.spec import CVConfig

FEATURES = ("signal", "noise")


def manifest(task="binary", n=103, positive=0.3, seed=0, **columns):
    rng = np.random.default_rng(seed)
    if task == "regression":
        labels, names, extra = [[] for _ in range(n)], [], {"target": rng.normal(size=n)}
    else:
        labels, names, extra = [["pos"] if rng.random() < positive else ["neg"] for _ in range(n)], ["neg", "pos"], {}
    frame = pd.DataFrame({"id": [f"i{k}" for k in range(n)], "split": "train", "image": None, "labels": labels,
                          **extra, **columns})
    return Manifest(frame, names, task=task)


def test_folds_are_disjoint_cover_every_item_and_are_stratified():
    m = manifest()
    fold_of = assign_folds(m, 5, seed=0)
    assert fold_of.shape == (len(m),) and set(fold_of) == set(range(5))  # each item in exactly one fold
    sizes = np.bincount(fold_of)
    assert sizes.max() - sizes.min() <= 1
    positive = (m.frame["labels"].str[0] == "pos").to_numpy()
    per_fold = np.bincount(fold_of, weights=positive)
    assert per_fold.max() - per_fold.min() <= 1  # StratifiedKFold: positives spread evenly
    np.testing.assert_array_equal(fold_of, assign_folds(m, 5, seed=0))
    assert (fold_of != assign_folds(m, 5, seed=1)).any()


def test_regression_folds_are_plain_kfold_and_a_fold_column_wins():
    m = manifest("regression", n=23)
    sizes = np.bincount(assign_folds(m, 5))
    assert sizes.sum() == 23 and sizes.max() - sizes.min() <= 1
    given = manifest(n=12, fold=[k % 3 for k in range(12)])
    np.testing.assert_array_equal(assign_folds(given, 3), [k % 3 for k in range(12)])
    with pytest.raises(ValueError, match="cv.folds=5.*3 folds"):
        assign_folds(given, 5)
    broken = manifest(n=4, fold=[0, 1, None, 1])
    with pytest.raises(ValueError, match="'i2'.*empty 'fold'"):
        assign_folds(broken, 2)


def test_fold_manifest_tests_one_fold_and_carves_a_stratified_dev_split():
    m = manifest(n=200)
    fold_of = assign_folds(m, 5)
    seen_test = []
    for k in range(5):
        split = fold_manifest(m, fold_of, k, dev_fraction=0.1).frame["split"].to_numpy()
        assert set(split) == {"train", "dev", "test"}
        np.testing.assert_array_equal(split == "test", fold_of == k)
        assert (split == "dev").sum() == round(0.1 * (fold_of != k).sum())
        positive = (m.frame["labels"].str[0] == "pos").to_numpy()
        dev_rate, train_rate = positive[split == "dev"].mean(), positive[split == "train"].mean()
        assert abs(dev_rate - train_rate) < 0.1
        seen_test += list(m.frame["id"][split == "test"])
    assert sorted(seen_test) == sorted(m.frame["id"])
    with pytest.raises(ValueError, match="folds must be an integer >= 2"):
        CVConfig(folds=1)


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return write_synthetic_sets(tmp_path_factory.mktemp("binary"), "binary", n_items=200)


def run(root, out_dir, spec):
    return train_run(root / "manifest.parquet", {n: root / f"{n}.h5" for n in FEATURES}, out_dir, spec)


SPEC = {"model": "dmms", "features": list(FEATURES), "pooling": "max", "d_model": 16, "head_hidden": [16],
        "training": {"epochs": 3, "batch_size": 32, "lr": 1e-2, "warmup_epochs": 1}, "cv": {"folds": 5, "seed": 0}}


def test_cv_run_writes_per_fold_metrics_mean_std_and_out_of_fold_predictions(binary, tmp_path):
    out = tmp_path / "run"
    metrics = run(binary, out, SPEC)
    assert metrics == read_json(out / "metrics.json")
    assert metrics["cv"] == {"folds": 5, "seed": 0, "dev_fraction": 0.1, "from_column": False}
    assert [f["fold"] for f in metrics["folds"]] == list(range(5))
    accuracies = [f["test"]["accuracy"] for f in metrics["folds"]]
    assert metrics["test"]["accuracy"] == pytest.approx(np.mean(accuracies))
    assert metrics["test_std"]["accuracy"] == pytest.approx(np.std(accuracies, ddof=1))
    assert set(metrics["test_pooled"]) >= {"accuracy", "auc"}
    assert sum(f["n_items"]["test"] for f in metrics["folds"]) == metrics["n_items"]["total"] == 200
    assert len(metrics["history"]) == 3 and "dev_accuracy" in metrics["history"][0]

    rows = pd.read_parquet(out / "predictions.parquet")
    assert list(rows.columns) == ["id", "split", "fold", "neg", "pos", "labels"]
    predictions = rows[rows["split"] == "test"]
    assert predictions["id"].is_unique and len(predictions) == 200  # every item once, out of fold
    dev = rows[rows["split"] == "dev"]  # each fold's own dev items, which chose its epoch and decision
    assert sorted(dev["fold"].unique()) == list(range(5))
    for k in range(5):
        fold_dev, fold_test = (set(rows["id"][(rows["fold"] == k) & (rows["split"] == s)]) for s in ("dev", "test"))
        assert fold_dev and not fold_dev & fold_test
    thresholds = predictions["fold"].map(lambda k: metrics["folds"][k]["threshold"])  # each fold's own
    truth = (predictions["labels"].str[0] == np.where(predictions["pos"] >= thresholds, "pos", "neg"))
    assert truth.mean() == pytest.approx(metrics["test_pooled"]["accuracy"])
    argmax = (predictions["labels"].str[0] == np.where(predictions["pos"] > predictions["neg"], "pos", "neg"))
    assert argmax.mean() == pytest.approx(metrics["test_pooled"]["accuracy_argmax"])

    checkpoint = torch.load(out / "model.pt", weights_only=True)
    assert len(checkpoint["folds"]) == 5 and len(checkpoint["config"]["cv"]["test_ids"]) == 5
    test_ids = checkpoint["config"]["cv"]["test_ids"]
    assert sorted(i for ids in test_ids for i in ids) == sorted(predictions["id"])
    for k in range(5):
        assert set(predictions["id"][predictions["fold"] == k]) == set(test_ids[k])
    _, config = load_checkpoint(out / "model.pt", fold=2)
    assert config["fold"] == 2

    importance = read_json(out / "feature_importance.json")
    assert len(importance["per_item"]["ids"]) == 200

    again = evaluate_run(out, binary / "manifest.parquet", binary, device="cpu")
    assert again["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-9)
    assert again["pooled"]["auc"] == pytest.approx(metrics["test_pooled"]["auc"], abs=1e-9)
    with pytest.raises(ValueError, match="out of fold"):
        evaluate_run(out, binary / "manifest.parquet", binary, split="dev", device="cpu")


def test_cv_regression_with_a_pooled_model(tmp_path):
    root = write_synthetic_sets(tmp_path / "data", "regression", n_items=150)
    spec = {"model": "logreg", "features": list(FEATURES), "pooling": "mean", "cv": {"folds": 3}}
    metrics = run(root, tmp_path / "run", spec)
    assert len(metrics["folds"]) == 3 and metrics["test_std"]["rmse"] >= 0
    assert metrics["test"]["rmse"] == pytest.approx(np.mean([f["test"]["rmse"] for f in metrics["folds"]]))
    predictions = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    assert list(predictions.columns) == ["id", "split", "fold", "prediction", "target"]
    assert (predictions["split"] == "test").sum() == 150 and (predictions["split"] == "dev").any()


@pytest.mark.parametrize("cv, key", [({"folds": 5, "sed": 1}, "'cv.sed'"), ({"folds": 1}, "cv.folds"),
                                     ({"dev_fraction": 1.5}, "cv.dev_fraction")])
def test_bad_cv_spec_names_the_key(binary, tmp_path, cv, key):
    with pytest.raises(SpecError, match=key):
        run(binary, tmp_path / "bad", {**SPEC, "cv": cv})
