"""The learner protocol: fit on train (dev chooses), predict, explain. The one place that tells trained
models (``TrainedModel``, by the epoch loop) from fitted ones (``FittedModel``, fitted once on pooled features).
A trained model gives the loop its parameter groups and names its output layer; the dataset gives its collate.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Protocol

import numpy as np
from torch import nn

from mmsets.models.fitted import FittedModel
from mmsets.models.parts import TrainedModel
from mmsets.models.importance import NO_SHARES, Importance, explain_batches, intra_weights
from mmsets.runs import loop
from mmsets.runs.loop import TrainResult, format_metrics, seed_everything
from mmsets.plan.spec import TrainConfig
from mmsets.tasks import Task, selection_key

log = logging.getLogger(__name__)


class Learner(Protocol):
    model: Any

    @property
    def n_params(self) -> int: ...

    def fit(self, train_ds: Any, dev_ds: Any, cfg: TrainConfig, task: Task,
            on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
        """``on_epoch``: called with each epoch's history entry (mmsets.runs.loop.fit); fitted models have none."""

    def predict(self, ds: Any, batch_size: int, task: Task) -> np.ndarray:
        """Outputs in the dataset's order: probabilities (N, C), or values (N,) for regression."""

    def explain(self, ds: Any, batch_size: int) -> Importance | None:
        """Per-modality shares over ``ds``; None when the family has none."""

    def extras(self) -> dict[str, Any]:
        """What the fit chose beyond the weights, for metrics.json."""


def _need_items(train_ds: Any, dev_ds: Any) -> None:
    if len(train_ds) == 0 or len(dev_ds) == 0:
        raise ValueError(f"need train and dev items, got {len(train_ds)} train and {len(dev_ds)} dev")


class TrainedLearner:
    """A ``TrainedModel`` trained by the epoch loop (DMMS, DM2S2, the fusion baselines)."""

    def __init__(self, model: TrainedModel):
        self.model = model

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def fit(self, train_ds, dev_ds, cfg, task, on_epoch=None):
        if not task.sigmoid:  # see mmsets.tasks: only sigmoid outputs keep the prior-initialised last bias
            nn.init.zeros_(self.model.output_layer.bias)
        return loop.fit(self.model, train_ds, dev_ds, cfg, task, on_epoch)

    def predict(self, ds, batch_size, task):
        return task.outputs(loop.dataset_logits(self.model, ds, batch_size))

    def explain(self, ds, batch_size):
        token_weights = intra_weights(self.model, loop.make_loader(ds, batch_size))
        try:
            shares = explain_batches(self.model, loop.make_loader(ds, batch_size))
        except NotImplementedError:  # no per-modality shares (DM2S2 without InterMRA may still have IntraMRA's)
            return None if token_weights is None else Importance(NO_SHARES, np.zeros((0, 0)), False,
                                                                        token_weights)
        return Importance(self.model.explain_kind, shares, token_weights=token_weights)

    def extras(self):
        return {}


class FittedLearner:
    """A ``FittedModel`` (LightGBM, logistic regression) fitted once on the pooled features of the training
    split; dev stops the boosting or picks the L2 strength, and chooses the decision rule."""

    def __init__(self, model: FittedModel):
        self.model = model

    @property
    def n_params(self) -> int:
        return self.model.n_params

    def fit(self, train_ds, dev_ds, cfg, task, on_epoch=None):
        _need_items(train_ds, dev_ds)
        model = self.model
        seed_everything(cfg.seed)
        X, X_dev = model.features(train_ds), model.features(dev_ds)
        sample_weight = None
        if task.name in ("binary", "multiclass"):
            weights = task.class_weights(train_ds.labels, cfg.class_weighting).numpy()
            sample_weight = weights[np.asarray(train_ds.labels).argmax(axis=1)]
        log.info("fitting %s on %d train / %d dev items, %d pooled features, %s task", type(model).__name__,
                 len(train_ds), len(dev_ds), X.shape[1], task.name)
        dev_truth = task.truth(dev_ds.labels)
        select = task.check_select(cfg.select)
        metric = task.default_select if select == "loss" else select  # fitted models report no dev loss

        def score(dev_predictions: np.ndarray) -> float:
            scores = task.epoch_metrics(dev_truth, task.from_model_scale(dev_predictions))
            return selection_key({**scores, "loss": 0.0}, metric)[0]

        start = time.perf_counter()
        model.fit(X, np.asarray(train_ds.labels), X_dev, np.asarray(dev_ds.labels), task.name, cfg.seed,
                  sample_weight, score=score)
        train_seconds = time.perf_counter() - start
        dev_outputs = task.from_model_scale(model.predict(X_dev))
        decision = task.decide(dev_truth, dev_outputs, cfg.decision, cfg.top1_rule)
        dev = {**task.metrics(dev_truth, dev_outputs, decision), "loss": None}
        log.info("fitted in %.1f s: dev %s", train_seconds, format_metrics(dev))
        selection = getattr(model, "selection", None)
        return TrainResult(None, [], decision, dev, dev_outputs, train_seconds, model.state_dict(),
                           selection.format(metric=metric) if selection else None)

    def predict(self, ds, batch_size, task):
        return task.from_model_scale(self.model.predict(self.model.features(ds)))

    def explain(self, ds, batch_size):
        try:
            shares = self.model.explain(ds)
        except NotImplementedError:
            return None
        return Importance(self.model.explain_kind, shares, per_item=False)

    def extras(self):
        return self.model.extras()


def learner_for(model: TrainedModel | FittedModel) -> TrainedLearner | FittedLearner:
    return FittedLearner(model) if isinstance(model, FittedModel) else TrainedLearner(model)
