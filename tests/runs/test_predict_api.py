"""load_run(...).predict / explain from Python: items given as a path, messages about the items given, the
features kept between predict and explain, a short repr, and the label column's classes in every output."""

import json

import pandas as pd
import pytest

import mmsets.predict
from mmsets import load_run
from mmsets.data.table import write_table_manifest
from mmsets.extract import run_extractor
from mmsets.predict import PREDICTED, PredictError, TrainedRun
from mmsets.runs.run import train_run

QUIET = {"device": "cpu", "num_workers": 0, "progress": False}
CLASSES = ["no", "yes"]  # as the table's label column holds them


def rows(n):
    return [{"id": f"ad-{k:03d}", "colour": ("red", "blue", "green")[k % 3], "size": ("big", "small")[k % 2],
             "answer": CLASSES[k % 3 == 0]} for k in range(n)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """DMMS on the categorical store of a small binary table whose classes are "no" and "yes"."""
    root = tmp_path_factory.mktemp("predict-api")
    pd.DataFrame(rows(60)).to_csv(root / "table.csv", index=False)
    manifest = write_table_manifest(root / "table.csv", root / "manifest.parquet", id_column="id", image_column=None,
                                    categorical_columns=["colour", "size"], label_column="answer", task="binary")
    assert manifest.label_names == CLASSES
    run_extractor("categorical", root / "manifest.parquet", root / "features" / "categorical.h5", {}, QUIET)
    spec = {"model": "dmms", "features": ["categorical"], "pooling": "max", "d_model": 8, "head_hidden": [8],
            "training": {"epochs": 2, "warmup_epochs": 1, "batch_size": 16}}
    train_run(root / "manifest.parquet", {"categorical": root / "features" / "categorical.h5"}, root / "run", spec)
    return root


def new_items(root, name):
    items = pd.DataFrame(rows(6)).drop(columns=["answer"])
    path = root / name
    if path.suffix == ".csv":
        items.to_csv(path, index=False)
    else:
        items.to_json(path, orient="records", lines=True)
    return path, items


@pytest.mark.parametrize("name", ["items.csv", "items.jsonl"])
def test_predict_takes_a_path_as_the_cli_does(trained, name):
    path, items = new_items(trained, name)
    run = load_run(trained / "run")
    from_path = run.predict(str(path), runtime=QUIET, device="cpu")
    run.last = None
    from_rows = run.predict(items, runtime=QUIET, device="cpu")
    assert list(from_path["id"]) == list(items["id"])
    pd.testing.assert_frame_equal(from_path, from_rows)


def test_explain_after_predict_of_the_same_items_extracts_nothing(trained, monkeypatch, tmp_path):
    path, _ = new_items(trained, "items.csv")
    calls = []
    real = mmsets.predict.run_recipe
    monkeypatch.setattr(mmsets.predict, "run_recipe", lambda *a, **k: calls.append(a) or real(*a, **k))
    run = load_run(trained / "run")
    predicted = run.predict(path, runtime=QUIET, device="cpu")
    shares = run.explain(path, runtime=QUIET, device="cpu")
    assert len(calls) == 1
    assert list(shares.columns) == ["id", "categorical"] and list(shares["id"]) == list(predicted["id"])

    other = pd.DataFrame(rows(6)).drop(columns=["answer"]).assign(colour="red")  # the same ids, other fields
    run.explain(other, runtime=QUIET, device="cpu")
    assert len(calls) == 2
    run.predict(other, work_dir=tmp_path / "work", runtime=QUIET, device="cpu")  # the stores asked for there
    assert len(calls) == 3 and (tmp_path / "work" / "features" / "categorical.h5").is_file()


def test_the_run_shows_itself_in_a_line(trained):
    text = repr(load_run(trained / "run"))
    assert text == "TrainedRun('run', model='dmms', task='binary', labels=2, features=['categorical'])"


def test_the_label_columns_classes_name_every_output(trained):
    run = load_run(trained / "run")
    assert run.label_names == CLASSES
    assert set(CLASSES) <= set(pd.read_parquet(trained / "run" / "predictions.parquet").columns)
    metrics = json.loads((trained / "run" / "metrics.json").read_text())
    assert sorted(metrics["test"]["per_class_accuracy"]) == CLASSES
    frame = run.predict(new_items(trained, "items.csv")[0], runtime=QUIET, device="cpu")
    assert set(frame[PREDICTED]) <= set(CLASSES) and set(CLASSES) <= set(frame.columns)


def test_an_item_whose_image_is_not_a_file_is_named_with_its_path(tmp_path):
    """Checked before any extraction: the run's recipe alone (an image store) tells that images are read."""
    recipe = {"image": {"extractor": "image", "params": {}, "reads": {}}}
    run = TrainedRun(tmp_path / "run", {"features": ["image"], "stores": recipe, "label_names": CLASSES,
                                        "task": {"name": "binary"}, "model": "dmms"}, models=None)
    with pytest.raises(PredictError) as err:
        run.predict([{"id": "ad-7", "image": "posters/ad-7.jpg"}], image_root=tmp_path)
    message = str(err.value)
    assert "item 'ad-7'" in message and str(tmp_path / "posters" / "ad-7.jpg") in message
    assert "manifest" not in message


def test_new_items_may_name_their_id_and_image_columns_as_the_runs_table_did(tmp_path):
    table = pd.DataFrame(rows(40)).rename(columns={"id": "key"})
    table["poster"] = ""
    table.to_csv(tmp_path / "table.csv", index=False)
    write_table_manifest(tmp_path / "table.csv", tmp_path / "manifest.parquet", id_column="key",
                         image_column="poster", categorical_columns=["colour", "size"], label_column="answer",
                         task="binary")
    run_extractor("categorical", tmp_path / "manifest.parquet", tmp_path / "categorical.h5", {}, QUIET)
    spec = {"model": "dmms", "features": ["categorical"], "pooling": "max", "d_model": 8, "head_hidden": [8],
            "training": {"epochs": 1, "warmup_epochs": 1, "batch_size": 16}}
    train_run(tmp_path / "manifest.parquet", {"categorical": tmp_path / "categorical.h5"}, tmp_path / "run", spec)
    run = load_run(tmp_path / "run")
    assert run.config["item_columns"] == {"id": "key", "image": "poster"}
    items = table.drop(columns=["answer"]).head(3)
    manifest = run.items_manifest(items.assign(poster=["a.jpg", None, None]), image_root=tmp_path)
    assert list(manifest.frame["id"]) == ["ad-000", "ad-001", "ad-002"]
    assert manifest.frame["image"][0] == str(tmp_path / "a.jpg") and manifest.frame["image"][1] is None
    assert list(run.predict(items, runtime=QUIET, device="cpu")["id"]) == ["ad-000", "ad-001", "ad-002"]
