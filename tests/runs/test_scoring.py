"""One way to score a trained run: model.pt read once for every fold, new items scored from memory."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmsets import load_run
from mmsets.data.manifest import read_manifest, write_manifest
from mmsets.data.synthetic import write_synthetic_sets
from mmsets.data.table import write_table_manifest
from mmsets.data.table_demo import generate_table_demo
from mmsets.extract import run_extractor
from mmsets.io import read_json
from mmsets.metrics import ArgmaxDecision, Decision, PriorDecision, ThresholdDecision
from mmsets.runs.checkpoint import load_checkpoint
from mmsets.runs.evaluate import evaluate_run
from mmsets.runs.run import train_run
from mmsets.runs.scoring import combined_decision, open_stores, predict_items, read_run

FEATURES = ("signal", "noise")
FOLDS = 3
RUNTIME = {"device": "cpu", "num_workers": 0, "progress": False}


@pytest.fixture(scope="module")
def kfold(tmp_path_factory):
    root = write_synthetic_sets(tmp_path_factory.mktemp("kfold"), "binary", n_items=90)
    spec = {"model": "dmms", "features": list(FEATURES), "pooling": "max", "d_model": 8, "head_hidden": [8],
            "training": {"epochs": 2, "warmup_epochs": 1, "batch_size": 16}, "cv": {"folds": FOLDS}}
    train_run(root / "manifest.parquet", {n: root / f"{n}.h5" for n in FEATURES}, root / "run", spec)
    return root


@pytest.fixture
def torch_loads(monkeypatch):
    """The paths torch.load reads from here on."""
    paths, load = [], torch.load

    def counted(path, *args, **kwargs):
        paths.append(path)
        return load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counted)
    return paths


def test_a_kfold_run_is_read_once_for_all_its_folds(kfold, torch_loads):
    run = read_run(kfold / "run")
    assert len(torch_loads) == 1 and len(run.folds) == FOLDS
    for k, fold in enumerate(run.folds):
        model, config = load_checkpoint(kfold / "run" / "model.pt", fold=k)
        assert fold.config == config and fold.model is not run.folds[k - 1].model
        for name, value in model.state_dict().items():
            assert torch.equal(fold.model.state_dict()[name], value), (k, name)


def test_a_kfold_binary_run_predicts_new_items_at_the_mean_of_its_folds_thresholds(kfold):
    run = read_run(kfold / "run")
    decisions = [fold.decision for fold in run.folds]
    assert all(isinstance(d, ThresholdDecision) for d in decisions)
    manifest = read_manifest(kfold / "manifest.parquet")
    with open_stores({n: kfold / f"{n}.h5" for n in FEATURES}) as stores:
        prediction = predict_items(run, manifest, stores)
    assert isinstance(prediction.decision, ThresholdDecision)
    assert prediction.decision.threshold == pytest.approx(np.mean([d.threshold for d in decisions]))
    np.testing.assert_array_equal(prediction.decision.apply(prediction.outputs),
                                  prediction.outputs[:, 1] >= prediction.decision.threshold)


def test_folds_decisions_combine_into_one():
    assert combined_decision([ThresholdDecision(0.2, "f1_macro"), ThresholdDecision(0.4, "f1_macro")]) \
        == ThresholdDecision(pytest.approx(0.3), "f1_macro")
    # multi-class: the offsets averaged, a fold that kept the argmax adding none
    mixed = combined_decision([PriorDecision([0.0, 0.6, 1.2], "balanced_accuracy", 0.7, 0.6, 1.0, [0.5, 0.3, 0.2]),
                               ArgmaxDecision(), PriorDecision([0.3, 0.3, 0.0], "balanced_accuracy")])
    assert isinstance(mixed, PriorDecision) and mixed.metric == "balanced_accuracy" and mixed.power is None
    np.testing.assert_allclose(mixed.log_offsets, [0.1, 0.3, 0.4])
    assert isinstance(combined_decision([ArgmaxDecision(), ArgmaxDecision()]), ArgmaxDecision)
    both = combined_decision([Decision([0.2, 0.4], True, "f1_macro"), Decision([0.4, 0.6], False, "f1_macro")])
    assert both.threshold == pytest.approx([0.3, 0.5]) and not both.top1


def test_evaluating_and_loading_a_kfold_run_read_model_pt_once(kfold, torch_loads):
    metrics = evaluate_run(kfold / "run", kfold / "manifest.parquet", kfold, device="cpu")
    assert len(torch_loads) == 1
    trained = read_json(kfold / "run" / "metrics.json")
    assert metrics["accuracy"] == trained["test"]["accuracy"]
    assert metrics["pooled"]["auc"] == trained["test_pooled"]["auc"]
    run = load_run(kfold / "run")
    assert len(torch_loads) == 2 and len(run.models.folds) == FOLDS


@pytest.fixture(scope="module")
def categorical_run(tmp_path_factory):
    """A k-fold DMMS run on the table demo's ratings alone: the one extractor that needs no weights."""
    root = tmp_path_factory.mktemp("table")
    load_kwargs = generate_table_demo(root / "data", n_items=60, seed=5, image_size=16)
    table = Path(load_kwargs.pop("path"))
    write_table_manifest(table, root / "manifest.parquet", **load_kwargs)
    run_extractor("categorical", root / "manifest.parquet", root / "features" / "categorical.h5", {}, RUNTIME)
    spec = {"model": "dmms", "features": ["categorical"], "pooling": "max", "d_model": 8, "head_hidden": [8],
            "training": {"epochs": 2, "warmup_epochs": 1, "batch_size": 16}, "cv": {"folds": FOLDS}}
    train_run(root / "manifest.parquet", {"categorical": root / "features" / "categorical.h5"}, root / "run", spec)
    return root, table


def test_scoring_an_in_memory_table_equals_scoring_its_manifest(categorical_run, tmp_path):
    root, table = categorical_run
    rows = pd.read_csv(table, dtype=str).drop(columns=["parallel"]).head(12)
    rows.loc[3, "naturalness"] = None  # a missing field reads the same from memory as from parquet
    run = load_run(root / "run")
    in_memory = run.predict(rows, runtime=RUNTIME, device="cpu", image_root=table.parent)

    write_manifest(run.items_manifest(rows, table.parent), tmp_path / "items.parquet")
    from_file = run.predict(read_manifest(tmp_path / "items.parquet"), runtime=RUNTIME, device="cpu")
    kept = run.predict(rows, work_dir=tmp_path / "work", runtime=RUNTIME, device="cpu", image_root=table.parent)
    pd.testing.assert_frame_equal(in_memory, from_file, check_exact=True)
    pd.testing.assert_frame_equal(in_memory, kept, check_exact=True)
    assert list(in_memory["id"]) == list(rows["id"])
    assert np.isfinite(in_memory[run.label_names].to_numpy()).all()
    assert (tmp_path / "work" / "manifest.parquet").is_file()  # kept where the user asked


def test_mmsets_predict_names_the_class_the_folds_mean_threshold_gives(categorical_run):
    root, table = categorical_run
    rows = pd.read_csv(table, dtype=str).drop(columns=["parallel"]).head(12)
    run = load_run(root / "run")
    frame = run.predict(rows, runtime=RUNTIME, device="cpu", image_root=table.parent)
    negative, positive = run.label_names
    threshold = np.mean([fold.decision.threshold for fold in run.models.folds])
    assert list(frame["predicted"]) == list(np.where(frame[positive] >= threshold, positive, negative))
