"""Re-score a trained run: its models (``model.pt``, weights only) evaluated on any split.

A k-fold run is re-scored out of fold: each fold's model on the items it was tested on.
"""

from __future__ import annotations

import os

from mmsets.data.manifest import read_manifest
from mmsets.metrics import aggregate
from mmsets.plan.layout import store_path
from mmsets.runs.scoring import open_stores, read_run


def evaluate_run(run_dir: str | os.PathLike, manifest_path: str | os.PathLike, features_dir: str | os.PathLike,
                 split: str = "test", device: str = "auto") -> dict:
    """Metrics of the run's model on ``split``, with the decision rule it chose on dev.

    For a k-fold run ``split`` must be "test": the metrics are then the mean over folds (``std``
    beside them) and ``pooled`` those of all out-of-fold predictions together, as in its metrics.json.
    """
    run = read_run(run_dir)
    if run.is_kfold and split != "test":
        raise ValueError(f"{run.path}: a k-fold run is evaluated out of fold (split 'test'), not on {split!r}")
    run.to(device)
    manifest = read_manifest(manifest_path)
    with open_stores({name: store_path(features_dir, name) for name in run.config["features"]}) as stores:
        if not run.is_kfold:
            (fold,) = run.folds
            scored = fold.score(fold.labelled(manifest, stores, split))
            return {"run": run.path.name, "split": split, "n_items": scored.n_items, **scored.metrics}
        parts = [fold.score(fold.labelled(tested, stores, "test")) for fold, tested in run.tested(manifest)]
    mean, std = aggregate([p.metrics for p in parts])
    n_items = sum(len(test_ids) for test_ids in run.config["cv"]["test_ids"])
    return {"run": run.path.name, "split": "test", "n_items": n_items, **mean, "std": std,
            "pooled": run.folds[0].task.pooled_metrics([(p.truth, p.outputs, p.decision) for p in parts])}
