"""Training, separate from the models: it knows only ``forward(batch) -> logits`` and an optional
``explain(batch) -> (B, M)`` feature-importance share.

The recipe is the DMMS paper's (Sec. 4.3): AdamW, learning rate warmed up linearly from 0 over five
epochs then cosine-annealed, sigmoid cross-entropy with class weights (inverse square root of class
frequency), model selection on dev, test scored once with the selected weights.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from mmsets.data.manifest import read_manifest
from mmsets.data.sets import SetDataset, collate_sets
from mmsets.io import atomic_path, write_json
from mmsets.metrics import Decision, best_threshold, choose_decision, multilabel_metrics
from mmsets.models.dmms import DMMSConfig, dmms
from mmsets.store import RaggedStore

log = logging.getLogger(__name__)

# Model families: name -> (config dataclass, builder taking the config's fields as keywords).
MODELS: dict[str, tuple[type, Callable[..., nn.Module]]] = {
    "dmms": (DMMSConfig, dmms),
}
CLASS_WEIGHTINGS = ("inv_sqrt", "inv", "none")  # inv_sqrt: DMMS; inv (1/N_k): DM2S2
_RUN_KEYS = ("model", "features", "training")
_DATA_KEYS = ("input_dims", "n_classes")  # filled from the data, never from the spec


class SpecError(ValueError):
    pass


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    warmup_epochs: int = 5
    weight_decay: float = 0.01
    class_weighting: str = "inv_sqrt"
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    patience: int | None = None  # stop after this many epochs without a better dev F1-micro
    top1_rule: bool = True  # try "every item gets at least its top-1 label"; kept only if it helps on dev

    def __post_init__(self) -> None:
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise SpecError(f"training.class_weighting: {self.class_weighting!r} is not one of {CLASS_WEIGHTINGS}")
        if self.epochs < 1 or self.batch_size < 1 or self.warmup_epochs < 0:
            raise SpecError("training: epochs and batch_size must be >= 1, warmup_epochs >= 0")


@dataclass
class TrainResult:
    best_epoch: int
    history: list[dict]
    decision: Decision  # threshold (and top-1 rule) chosen on dev with the best weights
    dev: dict[str, float]  # f1_micro/macro/samples under ``decision``, and loss
    dev_probs: np.ndarray
    train_seconds: float
    state_dict: dict[str, Tensor] = field(repr=False)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def class_weights(labels: np.ndarray, mode: str = "inv_sqrt") -> Tensor:
    """Per-class loss weights from the training labels (N, C), normalised to mean 1.

    ``inv_sqrt``: 1/sqrt(n_k) as in DMMS; ``inv``: 1/n_k as in DM2S2; ``none``: all ones. A class
    without positives counts as one so it does not get an infinite weight.
    """
    counts = np.maximum(np.asarray(labels, np.float64).sum(axis=0), 1.0)
    weights = {"inv_sqrt": lambda n: n ** -0.5, "inv": lambda n: 1.0 / n, "none": np.ones_like}[mode](counts)
    return torch.as_tensor(weights / weights.mean(), dtype=torch.float32)


def weighted_bce(logits: Tensor, targets: Tensor, weights: Tensor | None) -> Tensor:
    """Sigmoid cross-entropy, each class's terms scaled by its weight, averaged over items and classes."""
    return F.binary_cross_entropy_with_logits(logits, targets, weight=None if weights is None else weights[None, :])


def warmup_cosine_lambda(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR factor per optimizer step: linear 0 -> 1 over ``warmup_steps``, then cosine 1 -> 0 by ``total_steps``."""
    decay_steps = max(1, total_steps - warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / warmup_steps
        progress = min(1.0, (step - warmup_steps) / decay_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine_lambda(warmup_steps, total_steps))


def configure_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    # Decay matrices only: decaying biases would pull the prior-initialised last bias back to 0.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _loader(ds: Dataset, batch_size: int, shuffle: bool = False, num_workers: int = 0,
            generator: torch.Generator | None = None) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_sets, num_workers=num_workers,
                      generator=generator)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _evaluate(model: nn.Module, ds: Dataset, batch_size: int, weights: Tensor | None = None,
              num_workers: int = 0) -> tuple[np.ndarray, float]:
    """Probabilities (N, C) in dataset order and the mean weighted loss."""
    model.eval()
    device = _device_of(model)
    probs, total = [], 0.0
    for batch in _loader(ds, batch_size, num_workers=num_workers):
        batch = batch.to(device)
        logits = model(batch)
        total += weighted_bce(logits, batch.labels, weights).item() * len(batch)
        probs.append(torch.sigmoid(logits).float().cpu().numpy())
    return np.concatenate(probs) if probs else np.zeros((0, len(ds.label_names)), np.float32), total / max(1, len(ds))


def predict(model: nn.Module, ds: Dataset, batch_size: int = 256) -> np.ndarray:
    """Sigmoid probabilities (N, C), in the dataset's order."""
    return _evaluate(model, ds, batch_size)[0]


@torch.no_grad()
def feature_importance(model: nn.Module, ds: Dataset, batch_size: int = 256) -> np.ndarray:
    """``model.explain`` over a dataset: (N, M) shares per modality. NotImplementedError if it has none."""
    explain = getattr(model, "explain", None)
    if explain is None:
        raise NotImplementedError(f"{type(model).__name__} has no explain()")
    model.eval()
    device = _device_of(model)
    shares = [explain(batch.to(device)).float().cpu().numpy() for batch in _loader(ds, batch_size)]
    return np.concatenate(shares) if shares else np.zeros((0, 0), np.float32)


def fit(model: nn.Module, train_ds: Dataset, dev_ds: Dataset, cfg: TrainConfig) -> TrainResult:
    """Train, keep the weights of the epoch with the best dev F1-micro, and choose the decision rule on dev.

    An epoch's dev F1-micro is taken at the best global threshold for that epoch, the way the
    model will be used. On return ``model`` holds the best weights.
    """
    if len(train_ds) == 0 or len(dev_ds) == 0:
        raise ValueError(f"need train and dev items, got {len(train_ds)} train and {len(dev_ds)} dev")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model.to(device)
    weights = class_weights(train_ds.labels, cfg.class_weighting).to(device)
    loader = _loader(train_ds, cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                     generator=torch.Generator().manual_seed(cfg.seed))
    optimizer = configure_optimizer(model, cfg)
    scheduler = warmup_cosine(optimizer, cfg.warmup_epochs * len(loader), cfg.epochs * len(loader))
    log.info("training on %s: %d train / %d dev items, %d steps per epoch, %d parameters", device, len(train_ds),
             len(dev_ds), len(loader), sum(p.numel() for p in model.parameters()))

    history: list[dict] = []
    best_f1, best_epoch, best_state = -1.0, 0, None
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        lr = optimizer.param_groups[0]["lr"]
        total = 0.0
        for batch in loader:
            batch = batch.to(device)
            loss = weighted_bce(model(batch), batch.labels, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(batch)
        dev_probs, dev_loss = _evaluate(model, dev_ds, cfg.batch_size, weights, cfg.num_workers)
        threshold, dev_f1 = best_threshold(dev_ds.labels, dev_probs)
        history.append({
            "epoch": epoch, "lr": lr, "train_loss": total / len(train_ds), "dev_loss": dev_loss,
            "dev_f1_micro": dev_f1, "dev_threshold": threshold,
            "dev_f1_micro_at_0.5": multilabel_metrics(dev_ds.labels, dev_probs >= 0.5)["f1_micro"],
        })
        improved = dev_f1 > best_f1
        if improved:
            best_f1, best_epoch = dev_f1, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        log.info("epoch %d/%d  train_loss %.4f  dev_loss %.4f  dev_f1_micro %.4f (t=%.2f)%s", epoch, cfg.epochs,
                 history[-1]["train_loss"], dev_loss, dev_f1, threshold, "  *" if improved else "")
        if cfg.patience is not None and epoch - best_epoch >= cfg.patience:
            log.info("no better dev F1-micro for %d epochs: stopping", cfg.patience)
            break
    train_seconds = time.perf_counter() - start

    model.load_state_dict(best_state)
    dev_probs, dev_loss = _evaluate(model, dev_ds, cfg.batch_size, weights, cfg.num_workers)
    decision = choose_decision(dev_ds.labels, dev_probs, try_top1=cfg.top1_rule)
    dev = {**multilabel_metrics(dev_ds.labels, decision.apply(dev_probs)), "loss": dev_loss}
    log.info("best epoch %d: dev f1_micro %.4f with threshold %.2f, top-1 rule %s (without %.4f, with %s)",
             best_epoch, dev["f1_micro"], decision.threshold, "on" if decision.top1 else "off",
             decision.dev_f1_micro_plain, decision.dev_f1_micro_top1)
    return TrainResult(best_epoch, history, decision, dev, dev_probs, train_seconds,
                       {k: v.cpu() for k, v in best_state.items()})


# ---------------------------------------------------------------------------------------- runs


@dataclass
class RunSpec:
    model: str
    features: list[str]
    model_kwargs: dict[str, Any]
    training: TrainConfig


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
    training = dict(spec.get("training", {}))
    train_keys = [f.name for f in dataclasses.fields(TrainConfig)]
    for key in training:
        if key not in train_keys:
            raise SpecError(f"spec key 'training.{key}' is not known; expected {train_keys}")
    model_kwargs = {k: v for k, v in spec.items() if k in model_keys}
    return RunSpec(name, features, model_kwargs, TrainConfig(**training))


def build_model(name: str, **kwargs: Any) -> nn.Module:
    return MODELS[name][1](**kwargs)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The model of a run's ``model.pt`` (in eval mode) and its config dict."""
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    config = checkpoint["config"]
    model = build_model(config["model"], **config["model_config"])
    model.load_state_dict(checkpoint["state_dict"])
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


def train_run(manifest_path: str | os.PathLike, feature_paths: Mapping[str, str | os.PathLike],
              out_dir: str | os.PathLike, spec: Mapping[str, Any]) -> dict:
    """Train one run and write its run directory (model.pt, metrics.json, predictions.parquet,
    feature_importance.json); return the metrics."""
    out_dir = Path(out_dir)
    run = parse_spec(spec, list(feature_paths))
    cfg = run.training
    manifest = read_manifest(manifest_path)
    if manifest.task == "regression":
        raise SpecError(f"{manifest_path}: regression manifests are not supported by the set classifiers")
    stores = {name: RaggedStore(feature_paths[name]) for name in run.features}
    try:
        train_ds, dev_ds, test_ds = (SetDataset(manifest, stores, split) for split in ("train", "dev", "test"))
    finally:
        for store in stores.values():
            store.close()
    label_names = train_ds.label_names

    seed_everything(cfg.seed)
    model_config = {**run.model_kwargs, "input_dims": train_ds.input_dims, "n_classes": len(label_names)}
    model = build_model(run.model, **model_config)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("run %s: %s over %s, %d parameters", out_dir.name, run.model, run.features, n_params)

    result = fit(model, train_ds, dev_ds, cfg)
    test_probs = predict(model, test_ds, cfg.batch_size)
    test = multilabel_metrics(test_ds.labels, result.decision.apply(test_probs))
    log.info("test f1_micro %.4f  f1_macro %.4f  f1_samples %.4f", test["f1_micro"], test["f1_macro"],
             test["f1_samples"])

    config = _plain({
        "model": run.model,
        "model_config": asdict(model.config) if dataclasses.is_dataclass(getattr(model, "config", None))
        else model_config,
        "features": run.features,
        "label_names": label_names,
        "training": asdict(cfg),
        "decision": result.decision.to_dict(),
        "dataset": manifest.dataset,
    })
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save({"config": config, "state_dict": result.state_dict}, tmp)

    predictions = pd.DataFrame({"id": test_ds.ids, "split": "test"})
    for k, label in enumerate(label_names):
        predictions[label] = test_probs[:, k].astype(np.float64)
    predictions["labels"] = list(manifest.split("test")["labels"].map(list))
    with atomic_path(out_dir / "predictions.parquet") as tmp:
        predictions.to_parquet(tmp, index=False)

    pooling = config["model_config"].get("pooling")
    write_json(out_dir / "feature_importance.json", _importance(model, test_ds, run.features, pooling, cfg.batch_size))

    metrics = _plain({
        "run": out_dir.name,
        "dataset": manifest.dataset,
        "model": run.model,
        "features": run.features,
        "pooling": pooling,
        "seed": cfg.seed,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "threshold": result.decision.threshold,
        "top1_rule": {"tried": cfg.top1_rule, "applied": result.decision.top1,
                      "dev_f1_micro_without": result.decision.dev_f1_micro_plain,
                      "dev_f1_micro_with": result.decision.dev_f1_micro_top1},
        "n_params": n_params,
        "train_seconds": result.train_seconds,
        "n_items": {"train": len(train_ds), "dev": len(dev_ds), "test": len(test_ds)},
        "dev": result.dev,
        "test": test,
        "history": result.history,
        "model_config": config["model_config"],
        "training": config["training"],
    })
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def _importance(model: nn.Module, ds: SetDataset, modalities: list[str], pooling: str | None,
                batch_size: int) -> dict:
    try:
        shares = feature_importance(model, ds, batch_size)
    except NotImplementedError:
        return {"modalities": modalities, "pooling": pooling, "mean_share": None}
    with_elements = shares.sum(axis=1) > 0  # an item with no element at all has a zero row
    mean = shares[with_elements].mean(axis=0) if with_elements.any() else np.zeros(len(modalities))
    return {
        "modalities": modalities,
        "pooling": pooling,
        "mean_share": {name: float(m) for name, m in zip(modalities, mean)},
        "n_items": int(with_elements.sum()),
        "per_item": {"ids": ds.ids, "shares": shares.astype(np.float64).round(6).tolist()},
    }
