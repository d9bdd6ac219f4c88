"""Scoring with a trained run: its ``model.pt`` read once (every fold's model built from that one read),
the datasets a model family reads, and a model's outputs, metrics and shares on a manifest's items.

Training builds its datasets here too, so a run is scored on items read exactly as it was trained on.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from mmsets.data.manifest import Manifest
from mmsets.data.sequences import SequenceDataset
from mmsets.data.sets import SetDataset
from mmsets.metrics import Decision, PriorDecision, ThresholdDecision, decision_from_dict
from mmsets.models.importance import Importance
from mmsets.plan.errors import SpecError
from mmsets.plan.families import SEQUENCE, family
from mmsets.io import read_json
from mmsets.plan.layout import ENSEMBLE_MEMBERS, MODEL
from mmsets.runs.checkpoint import load_models
from mmsets.runs.learner import learner_for
from mmsets.runtime import resolve_device
from mmsets.store import RaggedStore
from mmsets.tasks import Task, task_from_dict


def family_datasets(model: str, manifest: Manifest, stores: Mapping[str, RaggedStore], splits: Sequence[str | None],
                    label_names: Sequence[str], **options: Any) -> list[SetDataset | SequenceDataset]:
    """Datasets of ``splits`` (None: every item) in the form family ``model`` reads, without targets;
    ``options`` go to the dataset (a token sequence's ``modalities`` and ``erased``)."""
    if family(model).inputs == SEQUENCE:
        if len(stores) != 1:
            raise SpecError(f"spec key 'features': {model} reads exactly one token store, got {sorted(stores)}")
        (store,) = stores.values()
        return [SequenceDataset(manifest, store, split, label_names=label_names, **options) for split in splits]
    return [SetDataset(manifest, stores, split, label_names=label_names, **options) for split in splits]


def training_datasets(model: str, manifest: Manifest, stores: Mapping[str, RaggedStore], task: Task,
                      splits: Sequence[str] = ("train", "dev", "test")) -> list[SetDataset | SequenceDataset]:
    """Datasets of ``splits`` (the first the training split) with the task fitted on the first and every
    dataset's targets attached."""
    label_names = [] if task.name == "regression" else manifest.label_names
    datasets = family_datasets(model, manifest, stores, splits, label_names)
    task.fit(manifest, datasets[0])
    attach_targets(task, manifest, datasets)
    return datasets


def attach_targets(task: Task, manifest: Manifest, datasets: Sequence[Any]) -> None:
    """Give each dataset what the model learns, the task's targets: multi-hot labels, one class, a
    standardised value (a regression task fitted on its training split first)."""
    for ds in datasets:
        ds.labels = task.targets(manifest, ds)


def without_targets(task: Task, datasets: Sequence[Any]) -> None:
    """New items have no labels: zero targets of the task's shape, which nothing scores."""
    for ds in datasets:
        ds.labels = np.zeros((len(ds), task.n_outputs), np.float32)


@contextmanager
def open_stores(paths: Mapping[str, str | os.PathLike]) -> Iterator[dict[str, RaggedStore]]:
    """The stores ``{name: path}`` opened for reading, closed on exit."""
    stores: dict[str, RaggedStore] = {}
    try:
        for name, path in paths.items():
            stores[name] = RaggedStore(path)
        yield stores
    finally:
        for store in stores.values():
            store.close()


@dataclass
class Scored:
    """A model's outputs on labelled items, their truth, the decision it applies and the metrics."""

    metrics: dict
    truth: np.ndarray
    outputs: np.ndarray
    decision: Any
    n_items: int


@dataclass
class FoldModel:
    """One model of a trained run (a k-fold run holds one per fold) and the config that scores it."""

    model: Any
    config: dict

    @cached_property
    def task(self) -> Task:
        return task_from_dict(self.config.get("task"), self.config["label_names"])

    @cached_property
    def decision(self) -> Any:
        return decision_from_dict(self.config["decision"])

    @cached_property
    def learner(self) -> Any:
        return learner_for(self.model)

    @property
    def batch_size(self) -> int:
        return self.config["training"]["batch_size"]

    def labelled(self, manifest: Manifest, stores: Mapping[str, RaggedStore], split: str, **options: Any) -> Any:
        """The items of ``split`` as this model reads them, with their targets."""
        (ds,) = family_datasets(self.config["model"], manifest, stores, (split,), self.config["label_names"],
                                **options)
        attach_targets(self.task, manifest, [ds])
        return ds

    def unlabelled(self, manifest: Manifest, stores: Mapping[str, RaggedStore]) -> Any:
        """Every item of ``manifest`` as this model reads them, without labels (new items)."""
        (ds,) = family_datasets(self.config["model"], manifest, stores, (None,), self.config["label_names"])
        without_targets(self.task, [ds])
        return ds

    def outputs(self, ds: Any) -> np.ndarray:
        return self.learner.predict(ds, self.batch_size, self.task)

    def explain(self, ds: Any) -> Importance | None:
        return self.learner.explain(ds, self.batch_size)

    def score(self, ds: Any) -> Scored:
        """Metrics on a labelled dataset under the decision rule the model chose on dev."""
        truth = self.task.truth(ds.labels)
        outputs = self.outputs(ds)
        return Scored(self.task.metrics(truth, outputs, self.decision), truth, outputs, self.decision, len(ds))


@dataclass
class RunModels:
    """A run directory's models: one, or one per fold of a k-fold run."""

    path: Path
    folds: list[FoldModel]

    @property
    def config(self) -> dict:
        """The run's config (a k-fold run's decision and task: its first fold's)."""
        return self.folds[0].config

    @property
    def is_kfold(self) -> bool:
        return "cv" in self.config

    def to(self, device: str) -> "RunModels":
        target = resolve_device(device)
        for fold in self.folds:
            fold.model.to(target)
        return self

    def tested(self, manifest: Manifest) -> list[tuple[FoldModel, Manifest]]:
        """Each model with the manifest whose test split holds the items it was tested on: ``manifest``
        itself, or for a k-fold run each fold's test items (out of fold)."""
        if not self.is_kfold:
            return [(fold, manifest) for fold in self.folds]
        return [(fold, with_test_items(manifest, test_ids))
                for fold, test_ids in zip(self.folds, self.config["cv"]["test_ids"])]


def with_test_items(manifest: Manifest, test_ids: Sequence[str]) -> Manifest:
    """``manifest`` with ``test_ids`` as its test split and every other item as training."""
    frame = manifest.frame.copy()
    frame["split"] = np.where(frame["id"].astype(str).isin(set(test_ids)), "test", "train")
    return Manifest(frame, manifest.label_names, manifest.task, manifest.dataset, manifest.extra)


def read_run(run_dir: str | os.PathLike) -> RunModels:
    """The models of run ``run_dir``: its ``model.pt`` read once (weights only), every fold built from it."""
    path = Path(run_dir)
    return RunModels(path, [FoldModel(model, config) for model, config in load_models(path / MODEL)])


@dataclass
class EnsembleModels:
    """An ensemble's members (each a trained run) with their weights, and the decision it tuned on dev
    (``ensemble.json``, mmsets.runs.ensemble)."""

    path: Path
    members: list[tuple[RunModels, float]]
    decision: Any

    @cached_property
    def config(self) -> dict:
        """The first member's config (labels, task, dataset) with every member's features and stores."""
        config = dict(self.members[0][0].config)
        stores: dict = {}
        for run, _ in self.members:
            for name, recipe in run.config.get("stores", {}).items():
                if stores.setdefault(name, recipe) != recipe:
                    raise SpecError(f"{self.path}: members read differently made stores named {name!r}")
        features = [f for run, _ in self.members for f in run.config["features"]]
        config.update(model="ensemble", features=list(dict.fromkeys(features)), stores=stores)
        return config

    is_kfold = False

    def to(self, device: str) -> "EnsembleModels":
        for run, _ in self.members:
            run.to(device)
        return self


def is_ensemble(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / ENSEMBLE_MEMBERS).is_file()


def read_ensemble(run_dir: str | os.PathLike) -> EnsembleModels:
    """An ensemble directory's members, read from their run directories beside it (weights only)."""
    path = Path(run_dir)
    raw = read_json(path / ENSEMBLE_MEMBERS)
    members = []
    for member in raw["members"]:
        member_dir = path.parent / str(member["run"])
        if not (member_dir / MODEL).is_file():
            raise FileNotFoundError(f"{path}: its member {member['run']} has no {MODEL} in {member_dir}")
        members.append((read_run(member_dir), float(member["weight"])))
    return EnsembleModels(path, members, decision_from_dict(raw["decision"]))


@dataclass
class Prediction:
    """A run's scores of new items: outputs and shares averaged over folds, the folds' decision as one."""

    ids: list[str]
    task: Task
    outputs: np.ndarray
    decision: Any
    shares: np.ndarray | None  # (N, M) when every fold explains items, else None
    kind: str | None
    modalities: list[str] | None


def predict_items(run: RunModels | EnsembleModels, manifest: Manifest, stores: Mapping[str, RaggedStore]
                  ) -> Prediction:
    """Every item of ``manifest`` (unlabelled) scored and explained by each of the run's models; an ensemble's
    outputs are its members' weighted (no shares: its members explain items each their own way)."""
    if isinstance(run, EnsembleModels):
        scored = [(predict_items(member, manifest, {n: stores[n] for n in member.config["features"]}), weight)
                  for member, weight in run.members]
        outputs = sum(weight * prediction.outputs for prediction, weight in scored)
        return Prediction(scored[0][0].ids, scored[0][0].task, outputs, run.decision, None, None, None)
    outputs, shares, kind, modalities = [], [], None, None
    ds = run.folds[0].unlabelled(manifest, stores)  # the folds read the same items the same way: read them once
    for fold in run.folds:
        outputs.append(fold.outputs(ds))
        importance = fold.explain(ds)
        if importance is not None and importance.per_item and importance.shares.size:
            shares.append(importance.shares)
            kind, modalities = importance.kind, list(getattr(ds, "modalities", fold.config["features"]))
    return Prediction(list(ds.ids), run.folds[-1].task, np.mean(outputs, axis=0),
                      combined_decision([fold.decision for fold in run.folds]),
                      np.mean(shares, axis=0) if len(shares) == len(run.folds) else None, kind, modalities)


def combined_decision(decisions: list[Any]) -> Any:
    """The folds' decisions as one: multi-label thresholds averaged, the top-1 rule by majority; a binary
    threshold averaged; multi-class log-offsets averaged (a fold that kept the argmax adds none)."""
    first = decisions[0]
    if len(decisions) == 1:
        return first
    if isinstance(first, ThresholdDecision):
        return ThresholdDecision(float(np.mean([d.threshold for d in decisions])), first.metric)
    offsets = [d.log_offsets for d in decisions if isinstance(d, PriorDecision)]
    if offsets:
        mean = np.sum(offsets, axis=0) / len(decisions)
        return PriorDecision(mean.tolist(), next(d for d in decisions if isinstance(d, PriorDecision)).metric)
    if not isinstance(first, Decision):
        return first
    thresholds = np.mean([np.broadcast_to(np.asarray(d.threshold, float), np.shape(first.threshold))
                          for d in decisions], axis=0)
    top1 = sum(d.top1 for d in decisions) * 2 > len(decisions)
    return Decision(thresholds.tolist() if thresholds.ndim else float(thresholds), top1, first.rule)
