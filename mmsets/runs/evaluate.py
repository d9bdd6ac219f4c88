"""Re-score a trained run: load its checkpoint (weights only) and evaluate it on any split.

A k-fold run is re-scored out of fold: each fold's model on the items it was tested on.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mmsets.data.manifest import Manifest, read_manifest
from mmsets.metrics import aggregate, decision_from_dict
from mmsets.store import RaggedStore
from mmsets.tasks import task_from_dict
from mmsets.plan.layout import store_path
from mmsets.runs.checkpoint import load_checkpoint
from mmsets.runs.learner import learner_for
from mmsets.runs.record import MODEL
from mmsets.runs.run import open_datasets
from mmsets.runtime import resolve_device


def evaluate_run(run_dir: str | os.PathLike, manifest_path: str | os.PathLike, features_dir: str | os.PathLike,
                 split: str = "test", device: str = "auto") -> dict:
    """Metrics of the run's model on ``split``, with the decision rule it chose on dev.

    For a k-fold run ``split`` must be "test": the metrics are then the mean over folds (``std``
    beside them) and ``pooled`` those of all out-of-fold predictions together, as in its metrics.json.
    """
    run_dir = Path(run_dir)
    model, config = load_checkpoint(run_dir / MODEL)
    manifest = read_manifest(manifest_path)
    stores = {name: RaggedStore(store_path(features_dir, name)) for name in config["features"]}
    try:
        if "cv" not in config:
            scores, n_items = _score(model, config, manifest, stores, split, device)
            return {"run": run_dir.name, "split": split, "n_items": n_items, **scores}
        if split != "test":
            raise ValueError(f"{run_dir}: a k-fold run is evaluated out of fold (split 'test'), not on {split!r}")
        parts, n_total = [], 0
        for k, test_ids in enumerate(config["cv"]["test_ids"]):
            model, fold_config = load_checkpoint(run_dir / MODEL, fold=k)
            fold = _only(manifest, test_ids)
            parts.append(_score(model, fold_config, fold, stores, "test", device, keep=True))
            n_total += len(test_ids)
    finally:
        for store in stores.values():
            store.close()
    mean, std = aggregate([p[0] for p in parts])
    task = parts[0][2]
    return {"run": run_dir.name, "split": "test", "n_items": n_total, **mean, "std": std,
            "pooled": task.pooled_metrics([p[3] for p in parts])}


def _only(manifest: Manifest, test_ids: list[str]) -> Manifest:
    frame = manifest.frame.copy()
    frame["split"] = np.where(frame["id"].astype(str).isin(set(test_ids)), "test", "train")
    return Manifest(frame, manifest.label_names, manifest.task, manifest.dataset, manifest.extra)


def _score(model, config: dict, manifest: Manifest, stores: dict, split: str, device: str, keep: bool = False):
    model.to(resolve_device(device))
    task = task_from_dict(config.get("task"), config["label_names"])
    (ds,) = open_datasets(manifest, stores, (split,), task, fit_on=None, label_names=config["label_names"],
                          model=config["model"])
    outputs = learner_for(model).predict(ds, config["training"]["batch_size"], task)
    decision = decision_from_dict(config["decision"])
    truth = task.truth(ds.labels)
    scores = task.metrics(truth, outputs, decision)
    if keep:
        return scores, len(ds), task, (truth, outputs, decision)
    return scores, len(ds)

