"""Robustness to missing modalities: a trained run's test metrics with each modality removed from every test
item, and split by coverage (the test items with at least one element of a modality, and those without).

Both papers argue for their models by missing modalities: DMMS (Sec. 3.1) against the placeholder that a
concatenation needs, DM2S2 (Sec. III-B) with an empty span. Removing a modality here is reading every test
item as an item without it reads: a family of vector stores (DMMS and the baselines) gets that store's elements
dropped (``SetDataset(dropped=...)``), and each family fills the gap its own way (its registry entry's
``missing``). A token-sequence family's cached states come from an encoder that attended across the spans,
so dropping one span's states would not remove what the others learnt from it; its removal is the re-encoding
of ``mmsets.runs.erasure`` (``erasure.json``), and here it has its coverage split only.

The coverage split re-runs no model: the run's own test outputs (``predictions.parquet``) under the decision it
chose on dev. A k-fold run: each fold's model and decision on its own test fold, the folds pooled.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mmsets.data.manifest import Manifest, read_manifest
from mmsets.data.sequences import SequenceDataset
from mmsets.io import write_json
from mmsets.plan.families import SETS, family
from mmsets.plan.layout import PREDICTIONS, ROBUSTNESS
from mmsets.runs.scoring import FoldModel, RunModels, open_stores, read_run
from mmsets.store import RaggedStore
from mmsets.tasks import Task

DROPPED, ERASURE = "dropped", "erasure"  # how a modality is removed: its elements dropped, or re-encoded


def robustness(run_dir: str | os.PathLike, manifest_path: str | os.PathLike,
               stores: Mapping[str, str | os.PathLike], device: str = "auto") -> dict[str, Any]:
    """Score run ``run_dir`` on its test items with each modality removed and split by coverage; write and
    return ``robustness.json``'s content (docs/formats.md). ``stores``: {name: path} of the stores it reads."""
    run = read_run(run_dir)
    features = run.config["features"]
    absent = [name for name in features if name not in stores]
    if absent:
        raise ValueError(f"{run.path}: no path given for its stores {absent}")
    manifest = read_manifest(manifest_path)
    by_vectors = family(run.config["model"]).inputs == SETS
    predictions = stored_test_outputs(run.path / PREDICTIONS)
    with open_stores({name: stores[name] for name in features}) as opened:
        parts = []
        for k, (fold, tested) in enumerate(run.tested(manifest)):
            ds = fold.labelled(tested, opened, "test", preload=False)  # the counts only: no element is read
            parts.append(Part(fold, ds, fold_outputs(predictions, fold, ds, k if run.is_kfold else None)))
        modalities = list(parts[0].counts)
        removed = {}
        if by_vectors:
            run.to(device)
            removed = {name: without(run, manifest, opened, name) for name in modalities}
    task = run.folds[0].task
    full = task.pooled_metrics([p.scored() for p in parts])
    result = {
        "run": run.path.name, "model": run.config["model"], "n_items": sum(len(p.ds) for p in parts),
        "folds": len(parts), "modalities": modalities, "full": full,
        "removal": DROPPED if by_vectors else ERASURE,
        "removed": {name: with_delta(task.pooled_metrics(scored), full) for name, scored in removed.items()},
        "coverage": {name: coverage(task, parts, name) for name in modalities},
    }
    write_json(run.path / ROBUSTNESS, result)
    return result


def without(run: RunModels, manifest: Manifest, stores: Mapping[str, RaggedStore], name: str) -> list[tuple]:
    """Each model's (truth, outputs, decision) on its test items with store ``name``'s elements dropped."""
    scored = [fold.score(fold.labelled(tested, stores, "test", dropped=(name,)))
              for fold, tested in run.tested(manifest)]
    return [(s.truth, s.outputs, s.decision) for s in scored]


class Part:
    """One model's test items: their truth, the run's stored outputs for them and each modality's elements."""

    def __init__(self, fold: FoldModel, ds: Any, outputs: np.ndarray) -> None:
        self.fold, self.ds, self.outputs = fold, ds, outputs
        self.truth = fold.task.truth(ds.labels)
        self.counts = element_counts(ds)

    def scored(self, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, Any]:
        """(truth, outputs, decision) of the items in ``mask`` (all without), as ``Task.pooled_metrics`` takes."""
        if mask is None:
            return self.truth, self.outputs, self.fold.decision
        return self.truth[mask], self.outputs[mask], self.fold.decision


def element_counts(ds: Any) -> dict[str, np.ndarray]:
    """Elements of each modality per item: a store's elements, or a token sequence's tokens of each span."""
    if isinstance(ds, SequenceDataset):
        tokens = ds.token_counts()
        return {name: tokens[:, k] for k, name in enumerate(ds.modalities)}
    return {name: ds.counts(name) for name in ds.modalities}


def stored_test_outputs(path: str | os.PathLike) -> pd.DataFrame:
    """The test rows of a run's ``predictions.parquet`` (runs from before it held dev rows have test rows only)."""
    frame = pd.read_parquet(path)
    if "split" in frame.columns:
        frame = frame[frame["split"] == "test"]
    return frame.assign(id=frame["id"].astype(str))


def fold_outputs(predictions: pd.DataFrame, fold: FoldModel, ds: Any, k: int | None) -> np.ndarray:
    """The stored test outputs of ``ds``'s items in its order (fold ``k``'s rows of a k-fold run)."""
    rows = predictions if k is None else predictions[predictions["fold"] == k]
    rows = rows.set_index("id")
    lacking = [i for i in ds.ids if i not in rows.index]
    if lacking:
        raise ValueError(f"{PREDICTIONS} lacks {len(lacking)} test items of the run (e.g. {lacking[0]!r}): "
                         f"train it again")
    return rows.loc[list(ds.ids), fold.task.output_names].to_numpy(np.float64)


def with_delta(scores: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
    """``{"test": scores, "delta": scores - full}``, the difference of every number both have."""
    return {"test": scores, "delta": {k: scores[k] - v for k, v in full.items()
                                      if isinstance(v, float) and isinstance(scores.get(k), float)}}


def coverage(task: Task, parts: list[Part], name: str) -> dict[str, dict[str, Any]]:
    """The test metrics of the items with at least one element of modality ``name`` and of those without
    (``test``: None when no item is on that side), with their numbers of items."""
    out = {}
    for side, present in (("with", True), ("without", False)):
        masks = [(p.counts[name] > 0) == present for p in parts]
        n_items = int(sum(m.sum() for m in masks))
        scored = [p.scored(m) for p, m in zip(parts, masks) if m.any()]
        out[side] = {"n_items": n_items, "test": task.pooled_metrics(scored) if scored else None}
    return out
