"""Runs: a run spec (model, features, training, cv) -> datasets, model, training -> run directory.

A run is one train/dev/test split, or with ``cv: {folds: 5}`` in its spec one model per fold of a
k-fold cross-validation (``mmsets.cv``), whose metrics are averaged over the folds. The loop itself
is ``mmsets.trainer``; its public names are importable from here too.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from mmsets.cv import FOLD_COLUMN, CVConfig, assign_folds, fold_manifest
from mmsets.data.manifest import Manifest, read_manifest
from mmsets.data.sequences import SequenceDataset
from mmsets.data.sets import SetDataset
from mmsets.io import atomic_path, write_json
from mmsets.metrics import Decision, aggregate
from mmsets.models.baselines import GMUConfig, LateFusionConfig, gmu, late_fusion
from mmsets.models.dm2s2 import DM2S2Config, EncoderOnlyConfig, dm2s2, encoder_only
from mmsets.models.dmms import DMMSConfig, dmms
from mmsets.models.pooled import LightGBMConfig, LogRegConfig, PooledModel, lightgbm, logreg
from mmsets.store import RaggedStore
from mmsets.tasks import RegressionTask, Task, class_weights, make_task, weighted_bce
from mmsets.trainer import (SpecError, TrainConfig, TrainResult, configure_optimizer, feature_importance, fit,
                            fit_pooled, format_metrics, output_layer, predict, resolve_device, seed_everything, warmup_cosine,
                            warmup_cosine_lambda)

log = logging.getLogger(__name__)

# Model families: name -> (config dataclass, builder taking the config's fields as keywords). A builder
# returns an ``nn.Module`` (trained by ``fit``) or a ``PooledModel`` (fitted by ``fit_pooled``).
MODELS: dict[str, tuple[type, Callable[..., Any]]] = {
    "dmms": (DMMSConfig, dmms),
    "late_fusion": (LateFusionConfig, late_fusion),
    "gmu": (GMUConfig, gmu),
    "lightgbm": (LightGBMConfig, lightgbm),
    "logreg": (LogRegConfig, logreg),
    "dm2s2": (DM2S2Config, dm2s2),
    "encoder_only": (EncoderOnlyConfig, encoder_only),
}
# Families that read one token store (SequenceDataset) rather than sets of feature vectors (SetDataset).
SEQUENCE_MODELS = ("dm2s2", "encoder_only")
_RUN_KEYS = ("model", "features", "training", "cv")
_DATA_KEYS = ("input_dims", "n_classes", "input_kinds", "hidden_size", "n_modalities")  # filled from the data, never from the spec

__all__ = [
    "MODELS", "RunSpec", "parse_spec", "build_model", "load_checkpoint", "open_datasets", "train_run",
    # re-exported from mmsets.trainer and mmsets.tasks
    "SpecError", "TrainConfig", "TrainResult", "class_weights", "weighted_bce", "configure_optimizer",
    "feature_importance", "fit", "fit_pooled", "output_layer", "predict", "resolve_device", "seed_everything",
    "warmup_cosine", "warmup_cosine_lambda",
]


@dataclass
class RunSpec:
    model: str
    features: list[str]
    model_kwargs: dict[str, Any]
    training: TrainConfig
    cv: CVConfig | None = None


def parse_spec(spec: Mapping[str, Any], available: list[str]) -> RunSpec:
    """Check a run spec; every unknown or bad key is named in the error."""
    name = spec.get("model", "dmms")
    if name not in MODELS:
        raise SpecError(f"spec key 'model': {name!r} is not one of {sorted(MODELS)}")
    config_cls, _ = MODELS[name]
    model_keys = [f.name for f in dataclasses.fields(config_cls) if f.name not in _DATA_KEYS]
    for key in spec:
        if key not in _RUN_KEYS and key not in model_keys:
            raise SpecError(f"spec key {key!r} is not known; expected {list(_RUN_KEYS) + model_keys}")
    features = list(spec.get("features", available))
    if not features:
        raise SpecError("spec key 'features': at least one feature is needed")
    for feature in features:
        if feature not in available:
            raise SpecError(f"spec key 'features': {feature!r} has no feature store (have {available})")
    training = TrainConfig(**_known(spec.get("training") or {}, TrainConfig, "training"))
    model_kwargs = {k: v for k, v in spec.items() if k in model_keys}
    try:  # fail on a bad model setting before any data is read
        data = ({"hidden_size": 8, "n_modalities": 1} if name in SEQUENCE_MODELS
                else {"input_dims": {f: 1 for f in features}})
        config_cls(n_classes=2, **data, **model_kwargs)
    except (TypeError, ValueError) as err:
        raise SpecError(f"spec for model {name!r}: {err}") from err
    cv = None
    if spec.get("cv") is not None:
        try:
            cv = CVConfig(**_known(spec["cv"], CVConfig, "cv"))
        except ValueError as err:
            raise SpecError(str(err)) from err
    return RunSpec(name, features, model_kwargs, training, cv)


def _known(section: Mapping[str, Any], cls: type, prefix: str) -> dict[str, Any]:
    if not isinstance(section, Mapping):
        raise SpecError(f"spec key {prefix!r} must be a mapping, got {section!r}")
    keys = [f.name for f in dataclasses.fields(cls)]
    for key in section:
        if key not in keys:
            raise SpecError(f"spec key '{prefix}.{key}' is not known; expected {keys}")
    return dict(section)


def build_model(name: str, **kwargs: Any) -> nn.Module | PooledModel:
    return MODELS[name][1](**kwargs)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", fold: int | None = None
                    ) -> tuple[nn.Module | PooledModel, dict]:
    """The model of a run's ``model.pt`` (in eval mode) and its config dict.

    A k-fold run holds one model per fold: ``fold`` picks one (default 0) and the config's
    ``decision`` and ``task`` are that fold's.
    """
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    config = dict(checkpoint["config"])
    state = checkpoint["state_dict"]
    if "folds" in checkpoint:
        part = checkpoint["folds"][fold or 0]
        state = part["state_dict"]
        config.update(decision=part["decision"], task=part["task"], fold=fold or 0)
    elif fold not in (None, 0):
        raise ValueError(f"{path}: not a k-fold run, it has no fold {fold}")
    model = build_model(config["model"], **config["model_config"])
    model.load_state_dict(state)
    return model.eval(), config


def _plain(obj: Any) -> Any:
    """Dataclass fields as JSON/weights_only-safe builtins (tuples become lists)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def open_datasets(manifest: Manifest, stores: Mapping[str, RaggedStore], splits: Sequence[str],
                  task: Task, fit_on: str | None = "train", label_names: Sequence[str] | None = None,
                  model: str = "dmms") -> list[SetDataset | SequenceDataset]:
    """Datasets of ``splits`` with the task's targets attached (the task fitted on ``fit_on`` first):
    ``SequenceDataset`` for the token-sequence families, ``SetDataset`` for the others."""
    if label_names is None:
        label_names = [] if task.name == "regression" else manifest.label_names
    if model in SEQUENCE_MODELS:
        if len(stores) != 1:
            raise SpecError(f"spec key 'features': {model} reads exactly one token store, got {sorted(stores)}")
        (store,) = stores.values()
        datasets = [SequenceDataset(manifest, store, split, label_names=label_names) for split in splits]
    else:
        datasets = [SetDataset(manifest, stores, split, label_names=label_names) for split in splits]
    if fit_on is not None:
        task.fit(manifest, datasets[list(splits).index(fit_on)])
    for ds in datasets:
        task.attach(manifest, ds)
    return datasets


@dataclass
class _Part:
    """What one train/dev/test assignment (the run, or one fold) leaves behind."""

    model_config: dict
    task: Task
    result: TrainResult
    n_params: int
    test_ids: list[str]
    test_truth: np.ndarray
    test_outputs: np.ndarray
    test: dict
    n_items: dict
    shares: np.ndarray | None  # (n_test, M) feature importance from model.explain
    explain_kind: str | None
    gain: dict | None  # LightGBM's split-gain share per modality
    extra: dict
    modalities: list[str]  # the stores (set models) or the token sequence's modalities (DM2S2)


def _data_config(model: str, ds: SetDataset | SequenceDataset, task: Task) -> dict[str, Any]:
    """The model settings that come from the data: input sizes (and kinds), number of outputs."""
    if model in SEQUENCE_MODELS:
        return {"hidden_size": ds.hidden_size, "n_modalities": ds.n_modalities, "n_classes": task.n_outputs}
    fields = {f.name for f in dataclasses.fields(MODELS[model][0])}
    config = {"input_dims": ds.input_dims, "n_classes": task.n_outputs}
    if "input_kinds" in fields and hasattr(ds, "input_kinds"):
        config["input_kinds"] = ds.input_kinds
    return config


def _train_part(run: RunSpec, manifest: Manifest, stores: Mapping[str, RaggedStore]) -> _Part:
    cfg = run.training
    task = make_task(manifest.task, manifest.label_names, cfg.single_label_loss, cfg.auc_threshold)
    try:
        task.check_select(cfg.select)
    except ValueError as err:
        raise SpecError(str(err)) from err
    train_ds, dev_ds, test_ds = open_datasets(manifest, stores, ("train", "dev", "test"), task, model=run.model)
    modalities = list(getattr(train_ds, "modalities", run.features))

    seed_everything(cfg.seed)
    model_config = {**run.model_kwargs, **_data_config(run.model, train_ds, task)}
    model = build_model(run.model, **model_config)
    model_config = asdict(model.config) if dataclasses.is_dataclass(getattr(model, "config", None)) else model_config
    shares, kind, gain, extra = None, None, None, {}
    if isinstance(model, PooledModel):
        result = fit_pooled(model, train_ds, dev_ds, cfg, task)
        n_params = model.n_params
        if hasattr(model, "modality_gain"):
            gain, kind = model.modality_gain(model.feature_names(train_ds)), model.explain_kind
        if hasattr(model, "best_iterations"):
            extra["boosting_rounds"] = model.best_iterations
        if hasattr(model, "chosen_C"):
            extra["chosen_C"] = model.chosen_C
    else:
        if not task.sigmoid:
            nn.init.zeros_(output_layer(model, task.n_outputs).bias)
        n_params = sum(p.numel() for p in model.parameters())
        result = fit(model, train_ds, dev_ds, cfg, task)
        try:
            shares = feature_importance(model, test_ds, cfg.batch_size)
            kind = getattr(model, "explain_kind", "argmax")
        except NotImplementedError:
            pass
    test_truth = task.truth(test_ds.labels)
    test_outputs = predict(model, test_ds, cfg.batch_size, task)
    test = task.metrics(test_truth, test_outputs, result.decision)
    log.info("test %s", format_metrics(test))
    return _Part(model_config, task, result, n_params, list(test_ds.ids), test_truth, test_outputs, test,
                 {"train": len(train_ds), "dev": len(dev_ds), "test": len(test_ds)}, shares, kind, gain, extra,
                 modalities)


def train_run(manifest_path: str | os.PathLike, feature_paths: Mapping[str, str | os.PathLike],
              out_dir: str | os.PathLike, spec: Mapping[str, Any]) -> dict:
    """Train one run and write its run directory (model.pt, metrics.json, predictions.parquet,
    feature_importance.json); return the metrics. With ``cv`` in the spec: one model per fold."""
    out_dir = Path(out_dir)
    run = parse_spec(spec, list(feature_paths))
    manifest = read_manifest(manifest_path)
    log.info("run %s: %s over %s, %s task%s", out_dir.name, run.model, run.features, manifest.task,
             f", {run.cv.folds}-fold cross-validation" if run.cv else "")
    stores = {name: RaggedStore(feature_paths[name]) for name in run.features}
    try:
        if run.cv is None:
            parts = [_train_part(run, manifest, stores)]
            folds = None
        else:
            folds = assign_folds(manifest, run.cv.folds, run.cv.seed)
            parts = []
            for k in range(run.cv.folds):
                log.info("fold %d/%d", k + 1, run.cv.folds)
                parts.append(_train_part(run, fold_manifest(manifest, folds, k, run.cv.dev_fraction, run.cv.seed),
                                         stores))
    finally:
        for store in stores.values():
            store.close()
    return _write_run(out_dir, run, manifest, parts, folds)


def _write_run(out_dir: Path, run: RunSpec, manifest: Manifest, parts: list[_Part], folds: np.ndarray | None
               ) -> dict:
    cfg, first = run.training, parts[0]
    config = _plain({
        "model": run.model,
        "model_config": first.model_config,
        "features": run.features,
        "label_names": first.task.label_names,
        "training": asdict(cfg),
        "decision": first.result.decision.to_dict(),
        "task": first.task.to_dict(),
        "dataset": manifest.dataset,
    })
    checkpoint: dict[str, Any] = {"config": config, "state_dict": first.result.state_dict}
    if run.cv is not None:
        config["cv"] = _plain({**asdict(run.cv), "from_column": FOLD_COLUMN in manifest.frame.columns,
                               "test_ids": [p.test_ids for p in parts]})
        checkpoint["folds"] = [{"state_dict": p.result.state_dict, "decision": _plain(p.result.decision.to_dict()),
                                "task": _plain(p.task.to_dict())} for p in parts]
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save(checkpoint, tmp)

    with atomic_path(out_dir / "predictions.parquet") as tmp:
        _predictions(manifest, parts, run.cv is not None).to_parquet(tmp, index=False)
    pooling = config["model_config"].get("pooling")
    write_json(out_dir / "feature_importance.json", _importance(parts, first.modalities, pooling))

    metrics = {
        "run": out_dir.name,
        "dataset": manifest.dataset,
        "task": manifest.task,
        "model": run.model,
        "features": run.features,
        "pooling": pooling,
        "seed": cfg.seed,
        "selection": first.result.selection,
        "n_params": first.n_params,
        "model_config": config["model_config"],
        "training": config["training"],
    }
    if run.cv is None:
        metrics.update(_part_metrics(first))
    else:
        metrics.update(_cv_metrics(parts, config["cv"]))
    metrics = _plain(metrics)
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def _part_metrics(part: _Part) -> dict:
    result = part.result
    out = {
        "epochs": len(result.history) if result.best_epoch is not None else None,
        "best_epoch": result.best_epoch,
        "threshold": result.decision.threshold,
        "train_seconds": result.train_seconds,
        "n_items": part.n_items,
        "dev": result.dev,
        "test": part.test,
        "history": result.history,
        **part.extra,
    }
    if isinstance(result.decision, Decision):
        out["top1_rule"] = {"tried": result.decision.dev_f1_micro_top1 is not None, "applied": result.decision.top1,
                            "dev_f1_micro_without": result.decision.dev_f1_micro_plain,
                            "dev_f1_micro_with": result.decision.dev_f1_micro_top1}
    return out


def _cv_metrics(parts: list[_Part], cv: dict) -> dict:
    """Per-fold metrics, their mean and standard deviation (``test`` is the mean over folds, as the
    Ads-Parallelity papers report), and the metrics of all out-of-fold predictions taken together."""
    per_fold = [{"fold": k, **_part_metrics(p)} for k, p in enumerate(parts)]
    dev_mean, dev_std = aggregate([p.result.dev for p in parts])
    test_mean, test_std = aggregate([p.test for p in parts])
    best = [p.result.best_epoch for p in parts if p.result.best_epoch is not None]
    return {
        "cv": {k: v for k, v in cv.items() if k != "test_ids"},
        "epochs": max((f["epochs"] for f in per_fold if f["epochs"] is not None), default=None),
        "best_epoch": float(np.mean(best)) if best else None,
        "threshold": None,  # one per fold, in "folds"
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
    frames = []
    for k, part in enumerate(parts):
        frame = pd.DataFrame({"id": part.test_ids, "split": "test"})
        if with_fold:
            frame["fold"] = k
        if isinstance(part.task, RegressionTask):
            frame["prediction"] = np.asarray(part.test_outputs, np.float64)
            frame["target"] = np.asarray(part.test_truth, np.float64)
        else:
            for j, name in enumerate(part.task.output_names):
                frame[name] = np.asarray(part.test_outputs[:, j], np.float64)
            labels = manifest.frame.set_index(manifest.frame["id"].astype(str))["labels"]
            frame["labels"] = [list(labels[i]) for i in part.test_ids]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _importance(parts: list[_Part], modalities: list[str], pooling: str | None) -> dict:
    """``feature_importance.json``: per-item shares from ``explain`` (max/min-pooling DMMS: the argmax
    wins; GMU: the gate), LightGBM's split-gain share per modality, or ``mean_share: null``."""
    if all(p.shares is not None for p in parts):
        shares = np.concatenate([p.shares for p in parts])
        ids = [i for p in parts for i in p.test_ids]
        with_elements = shares.sum(axis=1) > 0  # an item with no element at all has a zero row
        mean = shares[with_elements].mean(axis=0) if with_elements.any() else np.zeros(len(modalities))
        return {
            "modalities": modalities,
            "pooling": pooling,
            "kind": parts[0].explain_kind,
            "mean_share": {name: float(m) for name, m in zip(modalities, mean)},
            "n_items": int(with_elements.sum()),
            "per_item": {"ids": ids, "shares": shares.astype(np.float64).round(6).tolist()},
        }
    if all(p.gain is not None for p in parts):
        mean = aggregate([p.gain for p in parts])[0]
        return {"modalities": modalities, "pooling": pooling, "kind": parts[0].explain_kind,
                "mean_share": {name: mean.get(name, 0.0) for name in modalities}}
    return {"modalities": modalities, "pooling": pooling, "mean_share": None}
