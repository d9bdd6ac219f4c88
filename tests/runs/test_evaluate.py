import numpy as np
import pandas as pd

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.runs.evaluate import evaluate_run
from mmsets.io import read_json
from mmsets.store import RaggedWriter
from mmsets.runs.run import train_run


def test_evaluate_reproduces_the_test_metrics_of_training(tmp_path):
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    rows, feats = [], {}
    for i in range(150):
        y = [labels[j] for j in range(3) if rng.random() < 0.4] or ["a"]
        x = rng.normal(size=(int(rng.integers(0, 3)), 6)) + np.array([2.0 * (l in y) for l in labels] * 2)
        item_id = f"i{i}"
        rows.append({"id": item_id, "split": ("train", "train", "dev", "test")[i % 4], "image": None, "labels": y})
        feats[item_id] = x
    write_manifest(Manifest(pd.DataFrame(rows), labels), tmp_path / "manifest.parquet")
    with RaggedWriter(tmp_path / "f.h5", extractor="f", dim=6, dtype="float32") as w:
        for item_id, x in feats.items():
            w.add(item_id, x)
    spec = {"model": "dmms", "features": ["f"], "pooling": "max", "d_model": 16, "head_hidden": [16],
            "training": {"epochs": 3, "warmup_epochs": 1, "batch_size": 16}}
    train_run(tmp_path / "manifest.parquet", {"f": tmp_path / "f.h5"}, tmp_path / "run", spec)

    metrics = evaluate_run(tmp_path / "run", tmp_path / "manifest.parquet", tmp_path, split="test", device="cpu")
    trained = read_json(tmp_path / "run" / "metrics.json")["test"]
    for key in ("f1_micro", "f1_macro", "f1_samples"):
        assert abs(metrics[key] - trained[key]) < 1e-9
    assert metrics["n_items"] == 150 // 4 + (150 % 4 > 3)
