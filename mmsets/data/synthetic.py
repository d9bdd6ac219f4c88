"""Synthetic set features for every task type: feature stores and a manifest, no extraction needed.

Two float modalities: ``signal`` (1-3 elements of size 8 per item) carries the target, ``noise``
(0-3 elements of size 4) carries nothing; a few items have no element of either. The target follows
from the signal elements ``x``:

- multilabel: label k of 3 iff some element has ``x[k] > 1``;
- binary: "pos" iff some element has ``x[0] > 0.8``;
- multiclass: the argmax over "a", "b", "c" of the elements' mean of ``x[:3]``;
- regression: ``10 + 3 max(x[:, 0]) + x.mean(0)[1]`` plus a little noise (0 without elements).

Used by the trainer's tests and to try a model without running the extractors.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.store import RaggedWriter

LABELS = {"multilabel": ["p", "q", "r"], "binary": ["neg", "pos"], "multiclass": ["a", "b", "c"], "regression": []}


def _target(task: str, x: np.ndarray, rng: np.random.Generator):
    if task == "multilabel":
        return [name for j, name in enumerate(LABELS[task]) if len(x) and x[:, j].max() > 1.0], None
    if task == "binary":
        return [LABELS[task][int(len(x) > 0 and x[:, 0].max() > 0.8)]], None
    if task == "multiclass":
        return [LABELS[task][int(np.argmax(x[:, :3].mean(axis=0))) if len(x) else 0]], None
    value = 10.0 + (3.0 * x[:, 0].max() + x[:, 1].mean() if len(x) else 0.0) + 0.1 * rng.normal()
    return [], float(value)


def write_synthetic_sets(root: str | os.PathLike, task: str = "multilabel", n_items: int = 500, seed: int = 0,
                         split: tuple[float, float, float] = (0.6, 0.2, 0.2), n_empty: int = 2) -> Path:
    """Write ``root/{signal,noise}.h5`` and ``root/manifest.parquet``; return ``root``.

    ``n_empty`` items (the first ones) have no element at all.
    """
    if task not in LABELS:
        raise ValueError(f"task {task!r} is not one of {sorted(LABELS)}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    n_train, n_dev = round(split[0] * n_items), round(split[1] * n_items)
    rows = []
    with RaggedWriter(root / "signal.h5", extractor="signal", dim=8) as signal, \
            RaggedWriter(root / "noise.h5", extractor="noise", dim=4) as noise:
        for i in range(n_items):
            item_id = f"item{i:04d}"
            empty = i < n_empty
            x = rng.normal(size=(0 if empty else int(rng.integers(1, 4)), 8))
            signal.add(item_id, x)
            noise.add(item_id, rng.normal(size=(0 if empty else int(rng.integers(0, 4)), 4)))
            labels, target = _target(task, x, rng)
            rows.append({"id": item_id, "split": "train" if i < n_train else "dev" if i < n_train + n_dev else "test",
                         "image": None, "labels": labels, **({"target": target} if task == "regression" else {})})
    frame = pd.DataFrame(rows)
    # interleave the splits so the empty items do not all land in train
    frame["split"] = frame["split"].to_numpy()[rng.permutation(n_items)]
    write_manifest(Manifest(frame, LABELS[task], task=task, dataset=f"synthetic-{task}"), root / "manifest.parquet")
    return root
