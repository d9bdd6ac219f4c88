"""The epoch loop: train a ``TrainedModel`` (``forward(batch)`` gives logits, ``param_groups`` its optimizer's
groups) on a dataset that gives its ``collate``, keep the weights of the best dev epoch. It knows no model
family; what the task type changes (targets, loss, decision rule, metrics) comes from ``mmsets.tasks``.

The recipe is the DMMS paper's (Sec. 4.3): AdamW, learning rate warmed up linearly from 0 over five
epochs then cosine-annealed, sigmoid cross-entropy with class weights (inverse square root of class
frequency), model selection on dev, test scored once with the selected weights. Regression uses
DM2S2's RMSE loss (Eq. 17).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from mmsets.metrics import Decision, PriorDecision, ThresholdDecision
from mmsets.models.parts import TrainedModel
from mmsets.runs.distributed import local_device, sum_over_processes, world
from mmsets.plan.spec import TrainConfig
from mmsets.progress import duration, interactive, logs_beside_bars, progress
from mmsets.runtime import resolve_device, worker_init
from mmsets.tasks import MultiLabelTask, Task, selection_key

log = logging.getLogger(__name__)


class Items(Protocol):
    """What the loop asks of a dataset (``SetDataset``, ``SequenceDataset``): its items, their multi-hot
    labels, and the function that pads a list of items into a batch (whose ``to(device)`` moves it)."""

    label_names: Sequence[str]
    labels: Any  # (N, C)

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Any: ...

    def collate(self, items: Sequence[Any]) -> Any: ...


@dataclass
class TrainResult:
    best_epoch: int | None  # None for fitted models
    history: list[dict]
    decision: Any  # chosen on dev: an mmsets.metrics Decision (multi-label), ThresholdDecision, ... (by task)
    dev: dict[str, Any]  # the task's metrics under ``decision``, and loss
    dev_probs: np.ndarray  # dev outputs: probabilities, or values for regression
    train_seconds: float
    state_dict: dict[str, Any] = field(repr=False)
    selection: str | None = "f1_micro"  # the dev metric that chose the epoch (None: nothing was chosen)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def configure_optimizer(model: TrainedModel, cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.param_groups(cfg.lr, cfg.weight_decay), lr=cfg.lr)


def make_loader(ds: Items, batch_size: int, shuffle: bool = False, num_workers: int = 0,
                generator: torch.Generator | None = None, sampler: Sampler | None = None) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=ds.collate, num_workers=num_workers,
                      generator=generator, sampler=sampler, worker_init_fn=worker_init)


def _train_loader(ds: Items, cfg: TrainConfig) -> tuple[DataLoader, DistributedSampler | None]:
    """The epoch's shuffled batches; across processes each takes its share, batch_size in all."""
    rank, processes = world()
    if processes == 1:
        return make_loader(ds, cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                           generator=torch.Generator().manual_seed(cfg.seed)), None
    sampler = DistributedSampler(ds, num_replicas=processes, rank=rank, shuffle=True, seed=cfg.seed)
    return make_loader(ds, max(1, cfg.batch_size // processes), num_workers=cfg.num_workers, sampler=sampler), sampler


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def dataset_logits(model: nn.Module, ds: Items, batch_size: int, num_workers: int = 0) -> Tensor:
    """Logits (N, outputs) on the CPU, in dataset order."""
    model.eval()
    device = _device_of(model)
    out = [model(batch.to(device)).float().cpu() for batch in make_loader(ds, batch_size, num_workers=num_workers)]
    return torch.cat(out) if out else torch.zeros((0, np.asarray(ds.labels).shape[1]))


def _targets(ds: Items) -> Tensor:
    return torch.as_tensor(np.asarray(ds.labels, np.float32))


def fit(model: TrainedModel, train_ds: Items, dev_ds: Items, cfg: TrainConfig, task: Task | None = None,
        on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train, keep the weights of the epoch with the best dev selection metric, and choose the decision rule on dev.

    The selection metric is ``cfg.select`` (by default F1-micro at the epoch's best global threshold,
    accuracy or RMSE, by task); ties go to the lower dev loss. Without ``task`` the datasets are
    multi-label. On return ``model`` holds the best weights. ``on_epoch`` sees each epoch's history entry
    as it is written (a search's pruner: an exception it raises ends the training).
    """
    if len(train_ds) == 0 or len(dev_ds) == 0:
        raise ValueError(f"need train and dev items, got {len(train_ds)} train and {len(dev_ds)} dev")
    task = task or MultiLabelTask(train_ds.label_names)
    select = task.check_select(cfg.select)
    seed_everything(cfg.seed)
    device = local_device(resolve_device(cfg.device))
    model.to(device)
    weights = task.class_weights(train_ds.labels, cfg.class_weighting)
    weights_on_device = None if weights is None else weights.to(device)
    loader, sampler = _train_loader(train_ds, cfg)
    trained = model if sampler is None else DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    optimizer = configure_optimizer(model, cfg)
    scheduler = warmup_cosine(optimizer, cfg.warmup_epochs * len(loader), cfg.epochs * len(loader))
    log.info("training on %s%s: %d train / %d dev items, %d steps per epoch, %d parameters, %s task", device,
             f" in each of {world()[1]} processes" if sampler is not None else "", len(train_ds), len(dev_ds),
             len(loader), sum(p.numel() for p in model.parameters()), task.name)
    dev_targets, dev_truth = _targets(dev_ds), task.truth(dev_ds.labels)

    def score_dev() -> tuple[np.ndarray, float, dict]:
        logits = dataset_logits(model, dev_ds, cfg.batch_size, cfg.num_workers)
        loss = task.loss(logits, dev_targets, weights).item()
        outputs = task.outputs(logits)
        return outputs, loss, {**task.epoch_metrics(dev_truth, outputs), "loss": loss}

    history: list[dict] = []
    best_key, best_epoch, best_state = None, 0, None
    start = time.perf_counter()
    # A bar over the epochs on a terminal only: in a log, each epoch's line says as much, with the ETA.
    with progress(cfg.epochs, "training", "epoch", enabled=interactive()) as bar, logs_beside_bars():
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            if sampler is not None:
                sampler.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            total = 0.0
            for batch in loader:
                batch = batch.to(device)
                loss = task.loss(trained(batch), batch.labels, weights_on_device)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += loss.item() * len(batch)
            total = sum_over_processes(total, device)  # a sampler pads to equal shares: a few items count twice
            if not math.isfinite(total):
                raise FloatingPointError(f"epoch {epoch}/{cfg.epochs}: the training loss is {total / len(train_ds)} "
                                         f"(lr {lr:.3g}): training stopped, nothing was written; a lower lr may help")
            _, dev_loss, scores = score_dev()
            history.append({"epoch": epoch, "lr": lr, "train_loss": total / len(train_ds), "dev_loss": dev_loss,
                            **{f"dev_{k}": v for k, v in scores.items() if k != "loss"}})
            key = selection_key(scores, select)
            improved = best_key is None or key > best_key
            if improved:
                best_key, best_epoch = key, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            per_epoch = (time.perf_counter() - start) / epoch
            log.info("epoch %d/%d  train_loss %.4f  dev_loss %.4f  dev_%s %s  %.1f s/epoch, ETA %s%s", epoch,
                     cfg.epochs, history[-1]["train_loss"], dev_loss, select, _fmt(scores.get(select)), per_epoch,
                     duration(per_epoch * (cfg.epochs - epoch)), "  *" if improved else "")
            bar.update()
            if on_epoch is not None:
                on_epoch(history[-1])
            if cfg.patience is not None and epoch - best_epoch >= cfg.patience:
                log.info("no better dev %s for %d epochs: stopping", select, cfg.patience)
                break
    train_seconds = time.perf_counter() - start

    model.load_state_dict(best_state)
    dev_outputs, dev_loss, _ = score_dev()
    decision = task.decide(dev_truth, dev_outputs, cfg.decision, cfg.top1_rule)
    dev = {**task.metrics(dev_truth, dev_outputs, decision), "loss": dev_loss}
    log.info("best epoch %d: dev %s", best_epoch, format_metrics(dev))
    if isinstance(decision, Decision):
        log.info("decision %s: threshold %s, top-1 rule %s (dev %s without %.4f, with %s)", decision.rule,
                 decision.threshold, "on" if decision.top1 else "off", decision.rule, decision.dev_score_plain,
                 decision.dev_score_top1)
    elif isinstance(decision, (ThresholdDecision, PriorDecision)):
        log.info("decision %s tuned for dev %s: %.4f (argmax %.4f)%s", decision.rule, decision.metric,
                 decision.dev_score, decision.dev_score_argmax,
                 f", threshold {decision.threshold:.4f}" if isinstance(decision, ThresholdDecision)
                 else f", class priors to the power {decision.power}")
    return TrainResult(best_epoch, history, decision, dev, dev_outputs, train_seconds,
                       {k: v.cpu() for k, v in best_state.items()}, select)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_metrics(metrics: Mapping[str, Any]) -> str:
    return "  ".join(f"{k} {_fmt(v)}" for k, v in metrics.items() if not isinstance(v, Mapping))
