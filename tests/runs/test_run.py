import json

import numpy as np
import pandas as pd
import pytest
import torch

from mmsets.data.manifest import Manifest, read_manifest, write_manifest
from mmsets.data.sets import SetDataset
from mmsets.models.dmms import dmms
from mmsets.store import RaggedStore, RaggedWriter
from mmsets.runs.checkpoint import load_checkpoint
from mmsets.runs.learner import learner_for
from mmsets.runs.loop import fit
from mmsets.runs.run import train_run
from mmsets.plan.errors import SpecError
from mmsets.plan.spec import TrainConfig
from mmsets.tasks import MultiLabelTask, class_weights

LABELS = ["p", "q", "r"]


def make_synthetic(root):
    """Labels depend on the 'signal' modality only: label k iff some signal element has x[k] > 1.
    The 'noise' modality (0-3 elements) carries nothing; one dev item has no element at all."""
    rng = np.random.default_rng(0)
    n = {"train": 400, "dev": 150, "test": 150}
    ids, splits, labels = [], [], []
    with RaggedWriter(root / "signal.h5", extractor="signal", dim=8) as signal, \
            RaggedWriter(root / "noise.h5", extractor="noise", dim=4) as noise:
        for split, count in n.items():
            for i in range(count):
                item_id = f"{split}{i}"
                k = 0 if item_id == "dev0" else int(rng.integers(1, 4))
                x = rng.normal(size=(k, 8))
                signal.add(item_id, x)
                noise.add(item_id, rng.normal(size=(0 if item_id == "dev0" else int(rng.integers(0, 4)), 4)))
                ids.append(item_id)
                splits.append(split)
                labels.append([name for j, name in enumerate(LABELS) if k and x[:, j].max() > 1.0])
    frame = pd.DataFrame({"id": ids, "split": splits, "image": [None] * len(ids), "labels": labels})
    write_manifest(Manifest(frame, LABELS, dataset="synthetic"), root / "manifest.parquet")
    return root


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("synthetic"))


def datasets(root):
    manifest = read_manifest(root / "manifest.parquet")
    stores = {name: RaggedStore(root / f"{name}.h5") for name in ("signal", "noise")}
    return [SetDataset(manifest, stores, split) for split in ("train", "dev", "test")]


FAST = {"epochs": 12, "batch_size": 32, "lr": 1e-2, "warmup_epochs": 2}


def small_model(train_ds, **kwargs):
    torch.manual_seed(0)
    return dmms(input_dims=train_ds.input_dims, n_classes=len(LABELS), d_model=32, head_hidden=(32,), **kwargs)


def test_fit_learns_the_informative_modality(synthetic):
    train_ds, dev_ds, _ = datasets(synthetic)
    result = fit(small_model(train_ds), train_ds, dev_ds, TrainConfig(**FAST))
    prevalence = dev_ds.labels.mean()
    all_positive = 2 * prevalence / (1 + prevalence)  # F1-micro of predicting every label
    assert result.dev["f1_micro"] > all_positive + 0.25
    assert result.dev["f1_micro"] > 0.75
    assert 1 <= result.best_epoch <= FAST["epochs"] and len(result.history) == FAST["epochs"]


def test_class_weights_are_inverse_sqrt_with_mean_one():
    labels = np.zeros((100, 4))
    labels[:100, 0] = 1
    labels[:25, 1] = 1
    labels[:4, 2] = 1  # class 3 has no positive: counted as one
    w = class_weights(labels, "inv_sqrt").numpy()
    raw = np.array([1 / 10, 1 / 5, 1 / 2, 1.0])
    np.testing.assert_allclose(w, raw / raw.mean(), rtol=1e-6)
    assert w.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(class_weights(labels, "none").numpy(), np.ones(4))


SPEC = {"model": "dmms", "features": ["signal", "noise"], "pooling": "max", "d_model": 32, "head_hidden": [32],
        "training": {**FAST, "epochs": 4}}


def run(synthetic, out_dir, spec=SPEC):
    paths = {name: str(synthetic / f"{name}.h5") for name in ("signal", "noise")}
    return train_run(synthetic / "manifest.parquet", paths, out_dir, spec)


def test_train_run_writes_the_run_directory(synthetic, tmp_path):
    out = tmp_path / "runs" / "dmms-max-s0"
    metrics = run(synthetic, out)
    assert sorted(p.name for p in out.iterdir()) == ["feature_importance.json", "metrics.json", "model.pt",
                                                      "predictions.parquet"]
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("run", "model", "features", "pooling", "seed", "epochs", "best_epoch", "threshold", "n_params",
                "train_seconds", "dev", "test", "history"):
        assert key in on_disk, key
    assert on_disk["run"] == "dmms-max-s0" and on_disk["features"] == ["signal", "noise"]
    assert set(on_disk["dev"]) == {"f1_micro", "f1_macro", "f1_samples", "loss", "f1_micro_at_0.5", "f1_macro_at_0.5",
                                   "f1_samples_at_0.5"}
    assert set(on_disk["test"]) == set(on_disk["dev"]) - {"loss"}
    assert {"epoch", "train_loss", "dev_f1_micro"} <= set(on_disk["history"][0])
    assert on_disk["top1_rule"]["tried"] is True

    predictions = pd.read_parquet(out / "predictions.parquet")
    assert list(predictions.columns) == ["id", "split", *LABELS, "labels"]
    assert (predictions["split"] == "test").sum() == 150
    assert (predictions["split"] == "dev").sum() == on_disk["n_items"]["dev"]  # what the decision was tuned on
    predictions = predictions[predictions["split"] == "test"]

    importance = json.loads((out / "feature_importance.json").read_text())
    assert importance["modalities"] == ["signal", "noise"] and importance["pooling"] == "max"
    assert sum(importance["mean_share"].values()) == pytest.approx(1.0)
    assert len(importance["per_item"]["ids"]) == len(importance["per_item"]["shares"]) == 150

    # the checkpoint loads without pickle and gives back the same test probabilities
    checkpoint = torch.load(out / "model.pt", weights_only=True)
    assert checkpoint["config"]["model"] == "dmms"
    model, config = load_checkpoint(out / "model.pt")
    assert config["label_names"] == LABELS
    _, _, test_ds = datasets(synthetic)
    np.testing.assert_allclose(learner_for(model).predict(test_ds, 256, MultiLabelTask(LABELS)), predictions[LABELS].to_numpy(), rtol=1e-5, atol=1e-6)
    assert metrics["test"] == on_disk["test"]


def test_same_seed_same_metrics_and_sum_pooling_has_no_importance(synthetic, tmp_path):
    spec = {**SPEC, "pooling": "sum", "training": {**SPEC["training"], "epochs": 2}}
    a, b = run(synthetic, tmp_path / "a", spec), run(synthetic, tmp_path / "b", spec)
    for key in ("dev", "test", "best_epoch", "threshold"):
        assert a[key] == b[key], key
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    importance = json.loads((tmp_path / "a" / "feature_importance.json").read_text())
    assert importance == {"modalities": ["signal", "noise"], "pooling": "sum", "mean_share": None}


@pytest.mark.parametrize("spec, key", [
    ({**SPEC, "poolng": "max"}, "'poolng'"),
    ({**SPEC, "training": {"epoch": 3}}, "'training.epoch'"),
    ({**SPEC, "features": ["signal", "faces"]}, "'faces'"),
    ({**SPEC, "model": "gpt"}, "'model'"),
    ({**SPEC, "training": {"class_weighting": "focal"}}, "class_weighting"),
])
def test_bad_spec_names_the_key(synthetic, tmp_path, spec, key):
    with pytest.raises(SpecError, match=key):
        run(synthetic, tmp_path / "bad", spec)
    assert not (tmp_path / "bad").exists()


def test_a_modality_without_any_training_element_is_an_error(tmp_path):
    from mmsets.data.manifest import Manifest, write_manifest
    from mmsets.store import RaggedWriter

    rows = [{"id": f"i{k}", "split": ("train", "dev", "test")[k % 3], "image": None, "labels": [["a", "b"][k % 2]]}
            for k in range(30)]
    write_manifest(Manifest(pd.DataFrame(rows), ["a", "b"]), tmp_path / "m.parquet")
    with RaggedWriter(tmp_path / "f.h5", extractor="f", dim=4, dtype="float32") as w:
        for row in rows:
            w.add(row["id"], np.ones((1, 4)))
    with RaggedWriter(tmp_path / "empty.h5", extractor="image", dim=4, dtype="float32") as w:
        for row in rows:
            w.add(row["id"], np.zeros((0, 4)))
    spec = {"model": "dmms", "features": ["f", "empty"], "d_model": 8, "head_hidden": [8], "training": {"epochs": 1}}
    with pytest.raises(ValueError, match=r"\['empty'\]: not one element in any of the 10 training items"):
        train_run(tmp_path / "m.parquet", {"f": tmp_path / "f.h5", "empty": tmp_path / "empty.h5"}, tmp_path / "r", spec)


def _nan_store(tmp_path, bad):
    rows = [{"id": f"i{k}", "split": ("train", "dev", "test")[k % 3], "image": None, "labels": [["a", "b"][k % 2]]}
            for k in range(30)]
    write_manifest(Manifest(pd.DataFrame(rows), ["a", "b"]), tmp_path / "m.parquet")
    with RaggedWriter(tmp_path / "f.h5", extractor="f", dim=4, dtype="float32") as w:
        for row in rows:
            w.add(row["id"], np.ones((1, 4)))
    import h5py

    with h5py.File(tmp_path / "f.h5", "r+") as f:  # damage made after the store was sealed
        f["data"][bad] = np.nan
    return rows


def test_non_finite_features_are_refused_naming_the_store_and_item(tmp_path):
    _nan_store(tmp_path, [3, 7])
    spec = {"model": "dmms", "features": ["f"], "d_model": 8, "head_hidden": [8], "training": {"epochs": 1}}
    with pytest.raises(ValueError, match=r"f\.h5: item 'i3' holds non-finite values"):
        train_run(tmp_path / "m.parquet", {"f": tmp_path / "f.h5"}, tmp_path / "r", spec)
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_the_writer_refuses_non_finite_features(tmp_path):
    from mmsets.store import StoreError

    with pytest.raises(StoreError, match="item 'x': non-finite values"):
        with RaggedWriter(tmp_path / "g.h5", extractor="g", dim=2) as w:
            w.add("x", np.array([[1.0, np.inf]]))


def test_a_non_finite_loss_stops_training_naming_the_epoch(tmp_path):
    _nan_store(tmp_path, [])
    spec = {"model": "dmms", "features": ["f"], "d_model": 8, "head_hidden": [8],
            "training": {"epochs": 3, "warmup_epochs": 0, "lr": 1e30}}
    with pytest.raises(FloatingPointError, match=r"epoch \d/3: the training loss is (nan|inf)"):
        train_run(tmp_path / "m.parquet", {"f": tmp_path / "f.h5"}, tmp_path / "r", spec)
