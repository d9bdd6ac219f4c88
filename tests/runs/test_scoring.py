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
from mmsets.runs.checkpoint import load_checkpoint
from mmsets.runs.evaluate import evaluate_run
from mmsets.runs.run import train_run
from mmsets.runs.scoring import read_run

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
