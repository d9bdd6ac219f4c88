"""Robustness to missing modalities (mmsets.runs.robustness): tiny trained runs scored without each modality
and split by coverage."""

import json

import numpy as np
import pandas as pd
import pytest

from mmsets.cli import main
from mmsets.data.manifest import Manifest, read_manifest, write_manifest
from mmsets.data.sets import SetDataset
from mmsets.data.synthetic import write_synthetic_sets
from mmsets.io import read_json
from mmsets.runs.robustness import DROPPED, ERASURE, robustness
from mmsets.runs.run import train_run
from mmsets.runs.scoring import open_stores, read_run
from mmsets.store import RaggedStore, RaggedWriter

FEATURES = ("signal", "noise")  # signal carries the labels, noise nothing (mmsets.data.synthetic)
TRAINING = {"epochs": 3, "warmup_epochs": 1, "batch_size": 16}


def stores_of(root):
    return {name: root / f"{name}.h5" for name in FEATURES}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = write_synthetic_sets(tmp_path_factory.mktemp("robustness"), "multilabel", n_items=200)
    for model, settings in (("dmms", {"pooling": "max", "d_model": 8, "head_hidden": [8]}), ("logreg", {})):
        train_run(root / "manifest.parquet", stores_of(root), root / model,
                  {"model": model, "features": list(FEATURES), **settings, "training": TRAINING})
    return root


def test_a_dropped_store_reads_as_a_store_that_lacks_every_item(trained, tmp_path):
    with RaggedStore(trained / "signal.h5") as signal, RaggedWriter(tmp_path / "signal.h5", extractor="signal",
                                                                    dim=signal.dim) as empty:
        for item_id in signal.ids:
            empty.add(item_id, np.zeros((0, signal.dim), np.float32))
    manifest = read_manifest(trained / "manifest.parquet")
    (fold,) = read_run(trained / "dmms").to("cpu").folds
    with open_stores(stores_of(trained)) as stores, open_stores({"signal": tmp_path / "signal.h5",
                                                                 "noise": trained / "noise.h5"}) as without:
        dropped = fold.labelled(manifest, stores, "test", dropped=("signal",))
        lacking = fold.labelled(manifest, without, "test")
        assert not dropped.counts("signal").any() and dropped.counts("noise").any()
        assert dropped.input_dims == lacking.input_dims
        np.testing.assert_array_equal(fold.outputs(dropped), fold.outputs(lacking))
        with pytest.raises(ValueError, match="dropped modalities \\['poster'\\]"):
            SetDataset(manifest, stores, "test", dropped=("poster",))


@pytest.mark.parametrize("model", ["dmms", "logreg"])
def test_a_run_scored_without_each_store_and_by_coverage(trained, model):
    result = robustness(trained / model, trained / "manifest.parquet", stores_of(trained), device="cpu")
    assert read_json(trained / model / "robustness.json") == json.loads(json.dumps(result))
    test = read_json(trained / model / "metrics.json")["test"]
    assert result["full"] == pytest.approx({k: v for k, v in test.items() if k in result["full"]})
    assert result["removal"] == DROPPED and result["modalities"] == list(FEATURES) and result["folds"] == 1
    for name in FEATURES:
        removed = result["removed"][name]
        assert removed["delta"]["f1_micro"] == pytest.approx(removed["test"]["f1_micro"] - test["f1_micro"])
    if model == "logreg":  # fitted well enough in 3 epochs' time: the labels are lost with the signal
        assert result["removed"]["signal"]["delta"]["f1_micro"] < -0.2
        assert result["removed"]["signal"]["delta"]["f1_micro"] < result["removed"]["noise"]["delta"]["f1_micro"]

    # the coverage split: the run's own test outputs of the items with and without noise elements
    manifest = read_manifest(trained / "manifest.parquet")
    predictions = pd.read_parquet(trained / model / "predictions.parquet").query("split == 'test'").set_index("id")
    (fold,) = read_run(trained / model).folds
    with RaggedStore(trained / "noise.h5") as noise:
        has_noise = {i: i in noise and len(noise.get([i])[0]) > 0 for i in manifest.split("test")["id"]}
    for side, present in (("with", True), ("without", False)):
        ids = [i for i, has in has_noise.items() if has == present]
        labels = manifest.frame.set_index("id").loc[ids, "labels"]
        truth = np.array([[name in y for name in manifest.label_names] for y in labels], np.float32)
        outputs = predictions.loc[ids, manifest.label_names].to_numpy()
        assert result["coverage"]["noise"][side]["n_items"] == len(ids) > 0
        assert result["coverage"]["noise"][side]["test"] == pytest.approx(
            fold.task.metrics(truth, outputs, fold.decision))
    assert result["coverage"]["signal"]["without"]["n_items"] == sum(  # the synthetic items with no element
        1 for i in manifest.split("test")["id"] if int(i.removeprefix("item")) < 2)


def test_the_cli_writes_robustness_json(trained):
    (trained / "logreg" / "robustness.json").unlink(missing_ok=True)
    stores = json.dumps({name: str(path) for name, path in stores_of(trained).items()})
    assert main(["robustness", "--run-dir", str(trained / "logreg"), "--manifest", str(trained / "manifest.parquet"),
                 "--stores", stores, "--device", "cpu"]) == 0
    assert set(read_json(trained / "logreg" / "robustness.json")["removed"]) == set(FEATURES)
    with pytest.raises(ValueError, match="no path given for its stores \\['noise'\\]"):
        robustness(trained / "logreg", trained / "manifest.parquet", {"signal": trained / "signal.h5"})


def test_a_kfold_run_scores_each_fold_on_its_own_test_fold(tmp_path):
    root = write_synthetic_sets(tmp_path, "binary", n_items=90)
    spec = {"model": "dmms", "features": list(FEATURES), "pooling": "max", "d_model": 8, "head_hidden": [8],
            "training": {**TRAINING, "epochs": 2}, "cv": {"folds": 3}}
    train_run(root / "manifest.parquet", stores_of(root), root / "run", spec)
    result = robustness(root / "run", root / "manifest.parquet", stores_of(root), device="cpu")
    pooled = read_json(root / "run" / "metrics.json")["test_pooled"]
    assert result["folds"] == 3 and result["n_items"] == 90
    assert result["full"]["accuracy"] == pytest.approx(pooled["accuracy"])
    assert result["full"]["auc"] == pytest.approx(pooled["auc"])
    for name in FEATURES:
        sides = result["coverage"][name]
        assert sides["with"]["n_items"] + sides["without"]["n_items"] == 90
        assert set(result["removed"][name]["test"]) >= {"accuracy", "auc"}


def test_a_token_sequence_run_has_its_coverage_and_leaves_removal_to_erasure(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    with RaggedWriter(tmp_path / "tokens.h5", extractor="tokens", dim=8, fields={"modality": ((), "int8")},
                      attrs={"modalities": ["text:plot", "labels"]}) as store:
        for i in range(80):
            n_labels = int(rng.integers(0, 3))  # the poster's label words: none for some items
            modality = np.array([-1, 0, 0, -1] + [1] * n_labels + [-1])
            label = "a" if i % 2 else "b"
            states = rng.normal(size=(len(modality), 8))
            states[modality == 0, 0] += 3.0 if label == "a" else -3.0
            store.add(f"i{i}", states, modality=modality)
            rows.append({"id": f"i{i}", "split": ("train", "train", "dev", "test")[i % 4], "image": None,
                         "labels": [label]})
    write_manifest(Manifest(pd.DataFrame(rows), ["a", "b"]), tmp_path / "manifest.parquet")
    train_run(tmp_path / "manifest.parquet", {"tokens": tmp_path / "tokens.h5"}, tmp_path / "run",
              {"model": "encoder_only", "features": ["tokens"], "head_hidden": [8], "training": TRAINING})
    result = robustness(tmp_path / "run", tmp_path / "manifest.parquet", {"tokens": tmp_path / "tokens.h5"})
    assert result["removal"] == ERASURE and result["removed"] == {}
    assert result["modalities"] == ["text:plot", "labels"]
    assert result["coverage"]["text:plot"]["without"] == {"n_items": 0, "test": None}
    with RaggedStore(tmp_path / "tokens.h5") as store:
        test_ids = [r["id"] for r in rows if r["split"] == "test"]
        with_labels = sum(int((store.get([i], "modality")[0] == 1).any()) for i in test_ids)
    assert result["coverage"]["labels"]["with"]["n_items"] == with_labels
    assert 0 < with_labels < len(test_ids)
