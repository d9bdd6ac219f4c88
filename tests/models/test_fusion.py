import numpy as np
import pandas as pd
import pytest
import torch

from mmsets.data.manifest import read_manifest
from mmsets.data.sets import SetBatch, SetDataset, SetExample, collate_sets
from mmsets.runs.evaluate import evaluate_run
from mmsets.io import read_json
from mmsets.models.fusion import GMUConfig, gmu, late_fusion
from mmsets.store import RaggedStore
from mmsets.runs.checkpoint import load_checkpoint
from mmsets.runs.learner import learner_for
from mmsets.plan.errors import SpecError
from mmsets.tasks import make_task

FEATURES = ("signal", "noise")  # the stores of write_synthetic_sets
DIMS = {"a": 3, "b": 2}


def batch(items):
    return collate_sets([SetExample(f"i{k}", {n: np.asarray(x, np.float32).reshape(-1, DIMS[n]) for n, x in mods.items()},
                                    np.zeros(1, np.float32)) for k, mods in enumerate(items)])


ITEMS = [
    {"a": [[1, 2, 3], [3, 2, 1]], "b": [[1, -1]]},
    {"a": [[0.5, 0.5, 0.5]], "b": []},  # no element of b: a zero placeholder and presence flag 0
]


def test_late_fusion_pools_each_modality_with_zero_placeholders_and_presence_flags():
    torch.manual_seed(0)
    model = late_fusion(input_dims=DIMS, n_classes=2, head_hidden=(8,)).eval()
    fused = model.fuse(batch(ITEMS))
    np.testing.assert_allclose(fused[0], [2, 2, 2, 1, 1, -1, 1])
    np.testing.assert_allclose(fused[1], [0.5, 0.5, 0.5, 1, 0, 0, 0])
    # order and padding of the elements change nothing
    swapped = [{"a": ITEMS[0]["a"][::-1], "b": ITEMS[0]["b"]}]
    torch.testing.assert_close(model(batch(swapped)), model(batch(ITEMS))[:1])
    assert model(batch(ITEMS)).shape == (2, 2)


def test_gmu_follows_the_bimodal_equations():
    torch.manual_seed(0)
    model = gmu(input_dims=DIMS, n_classes=2, d_model=4, head_hidden=(8,)).eval()
    b = batch(ITEMS)
    h, z = model.gate(b)
    x1 = torch.tensor([[2.0, 2.0, 2.0], [0.5, 0.5, 0.5]])
    x2 = torch.tensor([[1.0, -1.0], [0.0, 0.0]])  # missing modality: zero input
    g = model.gmu
    h1, h2 = torch.tanh(x1 @ g.w1.weight.T), torch.tanh(x2 @ g.w2.weight.T)
    z_ref = torch.sigmoid(torch.cat([x1, x2], 1) @ g.wz.weight.T)
    torch.testing.assert_close(z, z_ref)
    torch.testing.assert_close(h, z_ref * h1 + (1 - z_ref) * h2)
    share = model.explain(b)
    torch.testing.assert_close(share.sum(1), torch.ones(2))
    with pytest.raises(ValueError, match="exactly 2 modalities"):
        GMUConfig(input_dims={"a": 1, "b": 1, "c": 1}, n_classes=2)


def test_index_modalities_pool_to_histograms():
    model = late_fusion(input_dims={"cat": 4}, n_classes=1, input_kinds={"cat": "index"}).eval()
    ids = torch.tensor([[1, 3, 0], [2, 0, 0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    fused = model.fuse(SetBatch({"cat": (ids, mask)}, torch.zeros(2, 1), ["x", "y"]))
    np.testing.assert_allclose(fused, [[0, 0.5, 0, 0.5, 1], [0, 0, 1, 0, 1]])




POOLED = ("lightgbm", "logreg")
TRAINING = {"epochs": 10, "batch_size": 32, "lr": 1e-2, "warmup_epochs": 2}
SMALL = {
    "late_fusion": {"head_hidden": [32], "training": TRAINING},
    "gmu": {"d_model": 32, "head_hidden": [32], "dropout": 0.1, "training": TRAINING},
    "lightgbm": {"n_estimators": 60, "min_child_samples": 5, "n_jobs": 1},
    "logreg": {"C": 0.5},
}


@pytest.mark.parametrize("model", sorted(SMALL))
def test_each_baseline_trains_on_a_binary_task(data, tmp_path, model, run):
    root = data("binary")
    # the label is "some element has x[0] > 0.8": max pooling sees it, the mean only hints at it
    spec = {"model": model, "features": list(FEATURES), "pooling": "mean" if model in POOLED else "max",
            **SMALL[model]}
    metrics = run(root, tmp_path / "run", spec)
    assert metrics["model"] == model and metrics["test"]["auc"] > 0.75
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["feature_importance.json", "metrics.json",
                                                                     "model.pt", "predictions.parquet"]
    # the checkpoint loads without pickle and gives back the test probabilities
    loaded, config = load_checkpoint(tmp_path / "run" / "model.pt")
    stores = {n: RaggedStore(root / f"{n}.h5") for n in FEATURES}
    test_ds = SetDataset(read_manifest(root / "manifest.parquet"), stores, "test")
    task = make_task("binary", config["label_names"])
    predictions = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    predictions = predictions[predictions["split"] == "test"]
    np.testing.assert_allclose(learner_for(loaded).predict(test_ds, 256, task), predictions[["neg", "pos"]], rtol=1e-5, atol=1e-6)
    again = evaluate_run(tmp_path / "run", root / "manifest.parquet", root, device="cpu")
    assert again["auc"] == pytest.approx(metrics["test"]["auc"], abs=1e-9)
    importance = read_json(tmp_path / "run" / "feature_importance.json")
    if model in ("gmu", "lightgbm"):
        assert importance["kind"] == {"gmu": "gate", "lightgbm": "gain"}[model]
        assert sum(importance["mean_share"].values()) == pytest.approx(1.0)
    else:
        assert importance["mean_share"] is None


def test_bad_baseline_settings_fail_before_training(data, tmp_path, run):
    with pytest.raises(SpecError, match="exactly 2 modalities"):
        run(data("binary"), tmp_path / "bad", {"model": "gmu", "features": ["signal"]})
    with pytest.raises(SpecError, match="'num_trees'"):
        run(data("binary"), tmp_path / "bad", {"model": "lightgbm", "features": ["signal"], "num_trees": 3})
