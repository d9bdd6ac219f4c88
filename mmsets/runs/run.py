"""The split/fold loop: a run spec -> datasets -> a learner per split (or fold) -> the run directory.

A run is one train/dev/test split, or with ``cv: {folds: 5}`` in its spec one model per fold of a
k-fold cross-validation (``mmsets.cv``), whose metrics are averaged over the folds.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from mmsets.cv import FOLD_COLUMN, assign_folds, fold_manifest
from mmsets.data.manifest import FINE_LABEL, Manifest, read_manifest
from mmsets.data.sets import SetDataset
from mmsets.extract.recipe import store_recipe
from mmsets.runs.distributed import is_main_process, local_device
from mmsets.io import atomic_path
from mmsets.metrics import Decision, aggregate, grouped_accuracy
from mmsets.models.importance import NO_SHARES, Importance, mean_share
from mmsets.plan.families import family
from mmsets.plan.layout import MODEL, PREDICTIONS
from mmsets.runs.checkpoint import plain, save_checkpoint
from mmsets.runs.learner import Learner, learner_for
from mmsets.runs.loop import TrainResult, format_metrics, seed_everything
from mmsets.runs.provenance import provenance
from mmsets.runs.record import ImportanceRecord, RunRecord
from mmsets.runs.scoring import open_stores, training_datasets
from mmsets.plan.errors import SpecError
from mmsets.plan.spec import RunSpec
from mmsets.runtime import resolve_device
from mmsets.store import RaggedStore
from mmsets.tasks import RegressionTask, Task, make_task

log = logging.getLogger(__name__)


def parse_spec(spec: RunSpec | Mapping[str, Any], available: list[str]) -> RunSpec:
    """Check a run spec against its family; every unknown or bad key is named in the error."""
    run = spec if isinstance(spec, RunSpec) else RunSpec.from_dict(spec, available)
    try:
        fam = family(run.model)
    except ValueError as err:
        raise SpecError(f"spec key 'model': {err}") from None
    for key in run.settings:
        if key not in fam.settings:
            raise SpecError(f"spec key {key!r} is not known; expected {['model', 'features', 'training', 'cv']}"
                            f" or a setting of {run.model}: {fam.settings}")
    try:  # fail on a bad model setting before any data is read
        fam.check(run.settings, run.features)
    except (TypeError, ValueError) as err:
        raise SpecError(f"spec for model {run.model!r}: {err}") from err
    return run


@dataclass
class _Part:
    """What one train/dev/test assignment (the run, or one fold) leaves behind."""

    model_config: dict
    task: Task
    result: TrainResult
    n_params: int
    dev_ids: list[str]
    test_ids: list[str]
    test_truth: np.ndarray
    test_outputs: np.ndarray
    test: dict
    n_items: dict
    importance: Importance | None
    extras: dict
    modalities: list[str]  # the stores (set models) or the token sequence's modalities (DM2S2)


def fit_part(run: RunSpec, manifest: Manifest, stores: Mapping[str, RaggedStore],
             splits: Sequence[str] = ("train", "dev", "test"), on_epoch: Callable[[dict], None] | None = None
             ) -> tuple[Task, Learner, TrainResult, list[Any]]:
    """The run's model trained on the manifest's train split, dev choosing: its task, learner, result and the
    datasets of ``splits`` (train and dev first). ``on_epoch``: see ``mmsets.runs.loop.fit``."""
    cfg = run.training
    task = make_task(manifest.task, manifest.label_names, cfg.single_label_loss, cfg.auc_threshold, cfg.select)
    try:
        task.check_select(cfg.select)
    except ValueError as err:
        raise SpecError(str(err)) from err
    datasets = training_datasets(run.model, manifest, stores, task, splits)
    train_ds, dev_ds = datasets[:2]
    modalities = list(getattr(train_ds, "modalities", run.features))
    if isinstance(train_ds, SetDataset):
        empty = [name for name in modalities if not train_ds.counts(name).any()]
        if empty:
            raise ValueError(f"feature store(s) {empty}: not one element in any of the {len(train_ds)} training "
                             f"items (see the store's summary: every image missing or skipped?); a model cannot "
                             f"learn from a modality it never sees")

    seed_everything(cfg.seed)
    fam = family(run.model)
    model = fam.build(**run.settings, **fam.data_config(train_ds, task.n_outputs))
    learner = learner_for(model)
    return task, learner, learner.fit(train_ds, dev_ds, cfg, task, on_epoch), datasets


def _train_part(run: RunSpec, manifest: Manifest, stores: Mapping[str, RaggedStore]) -> _Part:
    cfg = run.training
    task, learner, result, (train_ds, dev_ds, test_ds) = fit_part(run, manifest, stores)
    modalities = list(getattr(train_ds, "modalities", run.features))
    importance = learner.explain(test_ds, cfg.batch_size)
    test_truth = task.truth(test_ds.labels)
    test_outputs = learner.predict(test_ds, cfg.batch_size, task)
    test = task.metrics(test_truth, test_outputs, result.decision)
    if FINE_LABEL in manifest.frame.columns and task.name in ("binary", "multiclass"):
        fine = manifest.frame.set_index(manifest.frame["id"].astype(str))[FINE_LABEL]
        test["per_fine_class_accuracy"] = grouped_accuracy(test_truth, result.decision.apply(test_outputs),
                                                           [fine.get(i) for i in test_ds.ids])
    log.info("test %s", format_metrics(test))
    return _Part(asdict(learner.model.config), task, result, learner.n_params, list(dev_ds.ids), list(test_ds.ids),
                 test_truth, test_outputs, test,
                 {"train": len(train_ds), "dev": len(dev_ds), "test": len(test_ds)}, importance, learner.extras(),
                 modalities)


def train_run(manifest_path: str | os.PathLike, feature_paths: Mapping[str, str | os.PathLike],
              out_dir: str | os.PathLike, spec: RunSpec | Mapping[str, Any]) -> dict:
    """Train one run and write its run directory (model.pt, metrics.json, predictions.parquet,
    feature_importance.json); return the metrics. With ``cv`` in the spec: one model per fold. In a
    data-parallel run (mmsets.runs.distributed) only the first process writes; the others return {}."""
    out_dir = Path(out_dir)
    run = parse_spec(spec, list(feature_paths))
    manifest = read_manifest(manifest_path)
    log.info("run %s: %s over %s, %s task%s", out_dir.name, run.model, run.features, manifest.task,
             f", {run.cv.folds}-fold cross-validation" if run.cv else "")
    with open_stores({name: feature_paths[name] for name in run.features}) as stores:
        if run.cv is None:
            parts = [_train_part(run, manifest, stores)]
        else:
            folds = assign_folds(manifest, run.cv.folds, run.cv.seed)
            parts = []
            for k in range(run.cv.folds):
                log.info("fold %d/%d", k + 1, run.cv.folds)
                parts.append(_train_part(run, fold_manifest(manifest, folds, k, run.cv.dev_fraction, run.cv.seed),
                                         stores))
    if not is_main_process():  # every process of a data-parallel run holds the same result; the first writes it
        return {}
    recipe = store_recipe({name: feature_paths[name] for name in run.features})
    return _write_run(out_dir, run, manifest, parts, recipe).to_dict()


def _write_run(out_dir: Path, run: RunSpec, manifest: Manifest, parts: list[_Part], recipe: dict) -> RunRecord:
    cfg, first = run.training, parts[0]
    config = plain({
        "model": run.model,
        "model_config": first.model_config,
        "features": run.features,
        "label_names": first.task.label_names,
        "training": asdict(cfg),
        "decision": first.result.decision.to_dict(),
        "task": first.task.to_dict(),
        "dataset": manifest.dataset,
        "item_columns": manifest.extra.get("columns"),  # a table's id and image columns, as new items name them
        "stores": recipe,  # how each store was made: mmsets.predict extracts new items the same way
    })
    folds = None
    if run.cv is not None:
        config["cv"] = plain({**asdict(run.cv), "from_column": FOLD_COLUMN in manifest.frame.columns,
                              "test_ids": [p.test_ids for p in parts]})
        folds = [{"state_dict": p.result.state_dict, "decision": plain(p.result.decision.to_dict()),
                  "task": plain(p.task.to_dict())} for p in parts]
    save_checkpoint(out_dir / MODEL, config, first.result.state_dict, folds)

    with atomic_path(out_dir / PREDICTIONS) as tmp:
        _predictions(manifest, parts, run.cv is not None).to_parquet(tmp, index=False)
    pooling = config["model_config"].get("pooling")
    _importance_record(parts, first.modalities, pooling).write(out_dir)

    results = _part_metrics(first) if run.cv is None else _cv_metrics(parts, config["cv"])
    record = RunRecord(
        run=out_dir.name, dataset=manifest.dataset, task=manifest.task, model=run.model, features=run.features,
        pooling=pooling, seed=cfg.seed, group=run.group, combination=run.combination, variant=run.variant,
        selection=first.result.selection, n_params=first.n_params, model_config=config["model_config"],
        training=config["training"], provenance=provenance(_device(cfg.device)),
        stores=plain({name: {"extractor": r.get("extractor"), "params": r.get("params")} for name, r in recipe.items()}),
        **plain(results))
    record.write(out_dir)
    return record


def _device(setting: str) -> str | None:
    """The torch device the run trained on; None where the family fitted without torch."""
    if "torch" not in sys.modules:
        return None
    return str(local_device(resolve_device(setting)))


def _part_metrics(part: _Part) -> dict:
    result = part.result
    out = {
        "epochs": len(result.history) if result.best_epoch is not None else None,
        "best_epoch": result.best_epoch,
        "threshold": result.decision.threshold,
        "decision": result.decision.to_dict(),
        "train_seconds": result.train_seconds,
        "n_items": part.n_items,
        "dev": result.dev,
        "test": part.test,
        "history": result.history,
        "extras": part.extras,
    }
    if isinstance(result.decision, Decision):
        decision = result.decision
        out["top1_rule"] = {"tried": decision.dev_score_top1 is not None, "applied": decision.top1,
                            "rule": decision.rule, "dev_score_without": decision.dev_score_plain,
                            "dev_score_with": decision.dev_score_top1}
    return out


def _cv_metrics(parts: list[_Part], cv: dict) -> dict:
    """Per-fold metrics, their mean and standard deviation (``test`` is the mean over folds, as the
    Ads-Parallelity papers report), and the metrics of all out-of-fold predictions taken together."""
    per_fold = []
    for k, p in enumerate(parts):
        fold = _part_metrics(p)
        per_fold.append({"fold": k, **{key: v for key, v in fold.items() if key != "extras"}, **fold["extras"]})
    dev_mean, dev_std = aggregate([p.result.dev for p in parts])
    test_mean, test_std = aggregate([p.test for p in parts])
    best = [p.result.best_epoch for p in parts if p.result.best_epoch is not None]
    return {
        "cv": {k: v for k, v in cv.items() if k != "test_ids"},
        "epochs": max((f["epochs"] for f in per_fold if f["epochs"] is not None), default=None),
        "best_epoch": float(np.mean(best)) if best else None,
        "threshold": None,  # one per fold, in "folds"
        "decision": None,
        "train_seconds": float(sum(p.result.train_seconds for p in parts)),
        "n_items": {"total": sum(p.n_items["test"] for p in parts), "folds": [p.n_items for p in parts]},
        "dev": dev_mean,
        "dev_std": dev_std,
        "test": test_mean,
        "test_std": test_std,
        "test_pooled": parts[0].task.pooled_metrics([(p.test_truth, p.test_outputs, p.result.decision)
                                                     for p in parts]),
        "history": _mean_history([p.result.history for p in parts]),
        "folds": per_fold,
    }


def _mean_history(histories: list[list[dict]]) -> list[dict]:
    """Per-epoch mean over folds of every numeric history entry, for the epochs every fold ran."""
    n = min((len(h) for h in histories), default=0)
    return [{"epoch": e + 1, **aggregate([h[e] for h in histories])[0]} for e in range(n)]


def _predictions(manifest: Manifest, parts: list[_Part], with_fold: bool) -> pd.DataFrame:
    """Dev and test rows of every part: the dev rows let decisions and ensembles be fitted without the model."""
    frames = []
    for k, part in enumerate(parts):
        for split, ids, outputs in (("dev", part.dev_ids, part.result.dev_probs),
                                    ("test", part.test_ids, part.test_outputs)):
            frame = _output_rows(manifest, part.task, ids, outputs)
            frame.insert(1, "split", split)
            if with_fold:
                frame.insert(2, "fold", k)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _output_rows(manifest: Manifest, task: Task, ids: list[str], outputs: np.ndarray) -> pd.DataFrame:
    """``id``, the outputs (a column per class, or ``prediction``) and the truth (``labels``, or ``target``)."""
    frame = pd.DataFrame({"id": ids})
    if isinstance(task, RegressionTask):
        frame["prediction"] = np.asarray(outputs, np.float64)
        frame["target"] = task.raw_targets(manifest, ids)
        return frame
    values = np.asarray(outputs, np.float64).reshape(len(ids), len(task.output_names))
    for j, name in enumerate(task.output_names):
        frame[name] = values[:, j]
    labels = manifest.frame.set_index(manifest.frame["id"].astype(str))["labels"]
    frame["labels"] = [list(labels[i]) for i in ids]
    return frame


def _importance_record(parts: list[_Part], modalities: list[str], pooling: str | None) -> ImportanceRecord:
    """Per-item shares when the family explains each item (over every test fold), the mean of a
    whole-model share over folds (LightGBM's gain), or ``mean_share: None``."""
    found = [p.importance for p in parts]
    if not all(found) or len({i.kind for i in found}) != 1:
        return ImportanceRecord(modalities, pooling)
    kind = found[0].kind
    if kind == NO_SHARES:  # IntraMRA's token weights alone (DM2S2 without InterMRA)
        return ImportanceRecord(modalities, pooling, token_weights=found[0].token_weights)
    if all(i.per_item for i in found):
        shares = np.concatenate([i.shares for i in found])
        mean, with_elements = mean_share(shares)
        return ImportanceRecord(modalities, pooling, kind, {name: float(m) for name, m in zip(modalities, mean)},
                                int(with_elements.sum()), [i for p in parts for i in p.test_ids],
                                shares.astype(np.float64).round(6).tolist(), found[0].token_weights)
    mean = aggregate([dict(zip(modalities, i.shares[0].tolist())) for i in found])[0]
    return ImportanceRecord(modalities, pooling, kind, {name: mean.get(name, 0.0) for name in modalities})
