import json

import numpy as np
import pandas as pd
import pytest
import torch

from mmsets.data.manifest import Manifest, read_manifest, write_manifest
from mmsets.data.synthetic import write_synthetic_sets
from mmsets.runs.evaluate import evaluate_run
from mmsets.metrics import ThresholdDecision
from mmsets.models.dmms import dmms
from mmsets.predict import load_run
from mmsets.store import RaggedStore
from mmsets.tasks import MultiLabelTask, RegressionTask, SingleLabelTask, make_task, task_from_dict
from mmsets.runs.checkpoint import load_checkpoint
from mmsets.runs.learner import learner_for
from mmsets.runs.run import train_run
from mmsets.runs.scoring import attach_targets, family_datasets, training_datasets
from mmsets.plan.errors import SpecError

FEATURES = ("signal", "noise")
TRAINING = {"epochs": 12, "batch_size": 32, "lr": 1e-2, "warmup_epochs": 2}
SPEC = {"model": "dmms", "features": list(FEATURES), "pooling": "max", "d_model": 32, "head_hidden": [32],
        "training": TRAINING}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """One synthetic dataset per task, created on first use."""
    made = {}

    def get(task):
        if task not in made:
            made[task] = write_synthetic_sets(tmp_path_factory.mktemp(task), task, n_items=500)
        return made[task]

    return get


def run(root, out_dir, spec=SPEC):
    return train_run(root / "manifest.parquet", {n: root / f"{n}.h5" for n in FEATURES}, out_dir, spec)


def test_binary_task_learns_and_reports_accuracy_auc_and_per_class_accuracy(data, tmp_path):
    root = data("binary")
    metrics = run(root, tmp_path / "run")
    test = metrics["test"]
    labels = read_manifest(root / "manifest.parquet").split("test")["labels"].map(lambda v: v[0])
    majority = labels.value_counts(normalize=True).max()
    assert metrics["task"] == "binary" and metrics["selection"] == "accuracy"
    threshold = metrics["threshold"]
    assert metrics["decision"] == {"rule": "threshold", "threshold": threshold, "metric": "accuracy",
                                   "dev_score": metrics["dev"]["accuracy"],
                                   "dev_score_argmax": metrics["dev"]["accuracy_argmax"]}
    assert set(test) == {"accuracy", "balanced_accuracy", "auc", "f1_macro", "per_class_accuracy",
                         "n_predicted_classes", "accuracy_argmax"}
    assert test["n_predicted_classes"] == 2
    assert test["accuracy"] > majority + 0.05
    assert test["auc"] > 0.8
    assert set(test["per_class_accuracy"]) == {"neg", "pos"}
    assert test["balanced_accuracy"] == pytest.approx(np.mean(list(test["per_class_accuracy"].values())))
    assert {"dev_accuracy", "dev_auc", "dev_loss"} <= set(metrics["history"][0])

    predictions = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    assert list(predictions.columns) == ["id", "split", "neg", "pos", "labels"]
    assert (predictions["split"] == "dev").sum() == metrics["n_items"]["dev"]
    predictions = predictions[predictions["split"] == "test"]
    np.testing.assert_allclose(predictions[["neg", "pos"]].sum(axis=1), 1.0, rtol=1e-6)
    accuracy = (np.where(predictions["pos"] >= threshold, "pos", "neg") == predictions["labels"].str[0]).mean()
    assert accuracy == pytest.approx(test["accuracy"])
    argmax = (np.where(predictions["pos"] > predictions["neg"], "pos", "neg") == predictions["labels"].str[0]).mean()
    assert argmax == pytest.approx(test["accuracy_argmax"])

    again = evaluate_run(tmp_path / "run", root / "manifest.parquet", root, device="cpu")
    for key in ("accuracy", "auc", "balanced_accuracy", "n_predicted_classes"):
        assert again[key] == pytest.approx(test[key], abs=1e-9)

    # the stores came from the user's own code: the run loads, but new items cannot be extracted the same way
    trained = load_run(tmp_path / "run")
    assert {trained.recipe[n]["external"] for n in FEATURES} == {True}
    with pytest.raises(ValueError, match="'noise'.*not written by an mmsets extractor"):
        trained.predict([{"id": "new"}], work_dir=tmp_path / "new")


def test_multiclass_softmax_learns_and_selects_on_auc(data, tmp_path):
    spec = {**SPEC, "training": {**TRAINING, "single_label_loss": "softmax", "select": "auc"}}
    metrics = run(data("multiclass"), tmp_path / "run", spec)
    assert metrics["selection"] == "auc"
    assert metrics["test"]["accuracy"] > 0.6  # chance is 1/3
    assert metrics["test"]["auc"] > 0.85
    model, config = load_checkpoint(tmp_path / "run" / "model.pt")
    assert config["task"] == {"name": "multiclass", "loss": "softmax"}
    assert config["decision"] == {"rule": "argmax"}


def test_regression_beats_predicting_the_mean(data, tmp_path):
    root = data("regression")
    metrics = run(root, tmp_path / "run")
    manifest = read_manifest(root / "manifest.parquet")
    y_test = manifest.split("test")["target"].to_numpy()
    mean_rmse = float(np.sqrt(np.mean((y_test - manifest.split("train")["target"].mean()) ** 2)))
    test = metrics["test"]
    assert metrics["selection"] == "rmse"
    assert set(test) == {"rmse", "mae", "mape", "r2"}
    assert test["rmse"] < 0.6 * mean_rmse
    assert test["r2"] > 0.5 and 0 < test["mape"] < 0.2

    predictions = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    assert list(predictions.columns) == ["id", "split", "prediction", "target"]
    predictions = predictions[predictions["split"] == "test"]
    np.testing.assert_allclose(predictions["target"], y_test)
    rmse = np.sqrt(np.mean((predictions["prediction"] - predictions["target"]) ** 2))
    assert rmse == pytest.approx(test["rmse"])

    model, config = load_checkpoint(tmp_path / "run" / "model.pt")
    task = task_from_dict(config["task"], config["label_names"])
    assert task.mean == pytest.approx(manifest.split("train")["target"].mean())
    again = evaluate_run(tmp_path / "run", root / "manifest.parquet", root, device="cpu")
    assert again["rmse"] == pytest.approx(test["rmse"], abs=1e-9)


def test_regression_auc_with_a_threshold(data, tmp_path):
    spec = {**SPEC, "training": {**TRAINING, "epochs": 3, "auc_threshold": 11.0, "select": "auc"}}
    metrics = run(data("regression"), tmp_path / "run", spec)
    assert 0.5 < metrics["test"]["auc"] <= 1.0


def test_only_sigmoid_tasks_keep_the_prior_bias(data):
    model = dmms(input_dims={"a": 4}, n_classes=1, d_model=8, head_hidden=(8,))
    layer = model.output_layer
    assert layer is model.rho[-1]
    assert layer.bias.item() == pytest.approx(-np.log(99))
    assert make_task("multilabel", ["a"]).sigmoid and make_task("binary", ["a", "b"]).sigmoid
    assert not make_task("binary", ["a", "b"], "softmax").sigmoid and not make_task("regression", []).sigmoid


def test_single_label_outputs_are_distributions():
    logits = torch.tensor([[2.0, -1.0, 0.0], [-5.0, -5.0, -4.0]])
    for loss in ("sigmoid", "softmax"):
        probs = SingleLabelTask(["a", "b", "c"], "multiclass", loss).outputs(logits)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
        np.testing.assert_array_equal(probs.argmax(axis=1), [0, 2])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    weights = torch.tensor([1.0, 1.0, 1.0])
    softmax = SingleLabelTask(["a", "b", "c"], "multiclass", "softmax").loss(logits, targets, weights)
    assert softmax.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])).item())


def test_regression_targets_are_standardised_on_train(tmp_path):
    root = write_synthetic_sets(tmp_path, "regression", n_items=60)
    manifest = read_manifest(root / "manifest.parquet")
    stores = {n: RaggedStore(root / f"{n}.h5") for n in FEATURES}
    task = make_task("regression", [])
    train, test = training_datasets("dmms", manifest, stores, task, ("train", "test"))
    assert train.labels.shape == (len(train), 1)
    assert train.labels.mean() == pytest.approx(0.0, abs=1e-5) and train.labels.std() == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(task.truth(test.labels), manifest.split("test")["target"], rtol=1e-5)
    assert train[0].labels.shape == (1,)


def test_bad_targets_name_the_item(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b", "c"], "split": ["train", "dev", "test"], "image": None,
                          "labels": [["x"], ["x", "y"], ["y"]]})
    manifest = Manifest(frame, ["x", "y"], task="binary")
    task = make_task("binary", ["x", "y"])

    class Fake:
        ids = ["a", "b", "c"]
        labels = np.array([[1, 0], [1, 1], [0, 1]], np.float32)

    with pytest.raises(ValueError, match="'b'.*exactly one label"):
        task.targets(manifest, Fake())
    frame = pd.DataFrame({"id": ["a", "b"], "split": ["train", "dev"], "image": None, "labels": [[], []],
                          "target": [1.0, None]})
    with pytest.raises(ValueError, match="'b'.*not a number"):
        RegressionTask.raw_targets(Manifest(frame, [], task="regression"), ["a", "b"])
    with pytest.raises(ValueError, match="binary task needs exactly 2"):
        make_task("binary", ["x", "y", "z"])


@pytest.mark.parametrize("training, key", [
    ({"select": "rmse"}, "training.select"),
    ({"single_label_loss": "hinge"}, "single_label_loss"),
])
def test_bad_task_settings_name_the_key(data, tmp_path, training, key):
    with pytest.raises(SpecError, match=key):
        run(data("binary"), tmp_path / "bad", {**SPEC, "training": {**TRAINING, **training}})


def test_regression_manifest_needs_a_target_column(tmp_path):
    frame = pd.DataFrame({"id": ["a"], "split": ["train"], "image": None, "labels": [[]]})
    with pytest.raises(ValueError, match="'target' column"):
        Manifest(frame, [], task="regression")
    frame["target"] = [1.5]
    write_manifest(Manifest(frame, [], task="regression"), tmp_path / "m.parquet")
    assert read_manifest(tmp_path / "m.parquet").frame["target"].tolist() == [1.5]


def test_multilabel_predictions_are_plain_sigmoids(data):
    root = data("binary")
    manifest = read_manifest(root / "manifest.parquet")
    stores = {n: RaggedStore(root / f"{n}.h5") for n in FEATURES}
    (ds,) = family_datasets("dmms", manifest, stores, ("test",), manifest.label_names)
    attach_targets(make_task("binary", manifest.label_names), manifest, [ds])
    model = dmms(input_dims=ds.input_dims, n_classes=2, d_model=8, head_hidden=(8,)).eval()
    probs = learner_for(model).predict(ds, 256, MultiLabelTask(ds.label_names))
    assert probs.shape == (len(ds), 2) and np.allclose(probs, 0.01, atol=0.02)  # prior init, not normalised
    assert json.dumps(make_task("binary", ["n", "p"]).to_dict()) == '{"name": "binary", "loss": "sigmoid"}'


def test_multilabel_metrics_report_the_papers_protocol_beside_the_tuned_decision():
    task = make_task("multilabel", ["a", "b", "c"])
    truth = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    probs = np.array([[0.4, 0.1, 0.1], [0.1, 0.3, 0.1], [0.2, 0.1, 0.35], [0.45, 0.3, 0.1]])
    decision = task.decide(truth, probs)
    metrics = task.metrics(truth, probs, decision)
    assert metrics["f1_micro"] == 1.0  # a threshold of 0.3 separates them
    assert metrics["f1_micro_at_0.5"] == 0.0 and metrics["f1_macro_at_0.5"] == 0.0  # nothing reaches 0.5
    assert task.decide(truth, probs, "paper").apply(probs).sum() == 0


def test_a_binary_run_whose_argmax_predicts_one_class_predicts_both_with_its_tuned_threshold(tmp_path):
    """The collapse found on a 90-item table with 37 % positives: a strongly regularised logistic regression
    puts every item below 0.5, so the argmax calls all of them negative (balanced accuracy 50 %)."""
    root = write_synthetic_sets(tmp_path / "data", "binary", n_items=90)
    labels = read_manifest(root / "manifest.parquet").frame["labels"].str[0]
    assert (labels == "pos").mean() == pytest.approx(0.37, abs=0.02)
    spec = {"model": "logreg", "features": list(FEATURES), "C": 1e-3}
    metrics = run(root, tmp_path / "run", spec)
    predictions = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    assert (predictions["pos"] < predictions["neg"]).all()  # the argmax says "neg" for every item
    test = metrics["test"]
    assert test["accuracy_argmax"] == pytest.approx((predictions.loc[predictions["split"] == "test", "labels"].str[0]
                                                     == "neg").mean())
    assert metrics["decision"]["rule"] == "threshold" and metrics["threshold"] < 0.5
    assert test["n_predicted_classes"] == 2 and test["balanced_accuracy"] > 0.6
    assert metrics["dev"]["n_predicted_classes"] == 2


def test_single_label_decisions_are_tuned_for_the_selection_metric():
    truth = np.array([0, 0, 0, 0, 1, 1, 0, 1])
    positive = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.42, 0.05])
    probs = np.stack([1 - positive, positive], axis=1)
    for select, metric in (("auto", "accuracy"), ("auc", "accuracy"), ("loss", "accuracy"),
                           ("balanced_accuracy", "balanced_accuracy"), ("f1_macro", "f1_macro")):
        task = make_task("binary", ["n", "p"], select=select)
        decision = task.decide(truth, probs)
        assert decision.metric == metric
        assert task.epoch_metrics(truth, probs)[metric] == pytest.approx(decision.dev_score)  # epochs compare so
    assert make_task("binary", ["n", "p"]).epoch_metrics(truth, probs)["accuracy_argmax"] == pytest.approx(5 / 8)
    # k-fold test folds taken together: each fold's items under that fold's own threshold
    task = make_task("binary", ["n", "p"])
    pooled = task.pooled_metrics([(truth[:4], probs[:4], ThresholdDecision(0.4)),
                                  (truth[4:], probs[4:], ThresholdDecision(0.04))])
    assert pooled["accuracy"] == pytest.approx((4 + 3) / 8)
