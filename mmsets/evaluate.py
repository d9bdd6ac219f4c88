"""Re-score a trained run: load its checkpoint (weights only) and evaluate it on any split."""

from __future__ import annotations

import os
from pathlib import Path

from mmsets.data.manifest import read_manifest
from mmsets.data.sets import SetDataset
from mmsets.metrics import Decision, multilabel_metrics
from mmsets.store import RaggedStore
from mmsets.train import load_checkpoint, predict, resolve_device


def evaluate_run(run_dir: str | os.PathLike, manifest_path: str | os.PathLike, features_dir: str | os.PathLike,
                 split: str = "test", device: str = "auto") -> dict:
    """Metrics of the run's model on ``split``, with the decision rule it chose on dev."""
    model, config = load_checkpoint(Path(run_dir) / "model.pt")
    model.to(resolve_device(device))
    manifest = read_manifest(manifest_path)
    stores = {name: RaggedStore(Path(features_dir) / f"{name}.h5") for name in config["features"]}
    try:
        ds = SetDataset(manifest, stores, split, label_names=config["label_names"])
    finally:
        for store in stores.values():
            store.close()
    probs = predict(model, ds, config["training"]["batch_size"])
    decision = Decision(**config["decision"])
    return {"run": Path(run_dir).name, "split": split, "n_items": len(ds),
            **multilabel_metrics(ds.labels, decision.apply(probs))}
