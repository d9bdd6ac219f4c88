"""What the task type changes in training: targets, loss, outputs, decision rule, metrics, and the dev
metric that selects the epoch. The trainer and the models know nothing of it beyond this interface.

==============  ============================  =================================  ===================  =========
task            targets (``ds.labels``)       loss                               decision             selection
==============  ============================  =================================  ===================  =========
multilabel      multi-hot (N, C)              sigmoid CE, class weights          threshold (+ top-1)  f1_micro
binary          one-hot (N, 2)                sigmoid CE (papers) or softmax CE  threshold            accuracy
multiclass      one-hot (N, C)                sigmoid CE (papers) or softmax CE  argmax (+ priors)    accuracy
regression      standardised target (N, 1)    RMSE (DM2S2 Eq. 17)                the value            rmse
==============  ============================  =================================  ===================  =========

Single-label tasks follow the papers by default: both train them with sigmoid cross-entropy on one-hot
targets, one output per class (DMMS Sec. 4.3: rho is D -> 32 -> 2 for Ads-Parallelity; DM2S2 Eq. 16).
Their class probabilities are then the per-class sigmoids normalised to sum to one (the argmax is
unchanged; one-vs-rest AUC needs a distribution). ``single_label_loss: softmax`` trains the usual
softmax cross-entropy instead. Only sigmoid outputs keep the prior-initialised last bias
(``-log((1 - pi) / pi)``): for softmax a constant bias does nothing, and for regression it would start
every prediction 4.6 standard deviations off, so the trainer zeroes it.

Single-label decisions are tuned on dev for the selection metric (``training.select``) when it is
accuracy, balanced accuracy or F1-macro, else for accuracy: binary, a threshold on the positive class's
probability; multiclass, the probabilities divided by the dev class priors to a tuned power, kept only
when that beats the argmax on dev (``mmsets.metrics.choose_single_label_decision``). The epochs are
compared the same way, each at its own tuned decision, as multi-label epochs are at their best threshold.

Regression targets are standardised with the training split's mean and standard deviation; outputs
and metrics are in the target's own units.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.nn import functional as F

from mmsets.data.manifest import Manifest
from mmsets.metrics import (ValueDecision, best_threshold, choose_decision, choose_single_label_decision, f1_micro,
                            multilabel_metrics, paper_protocol_metrics, regression_metrics,
                            single_label_metrics)
from mmsets.plan.vocab import SINGLE_LABEL_DECISION_METRICS, SINGLE_LABEL_LOSSES

LOWER_IS_BETTER = frozenset({"loss", "rmse", "mae", "mape"})
TARGET_COLUMN = "target"


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


def rmse_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """DM2S2's regression loss (Eq. 17): the root of the mean squared error over the batch."""
    # The epsilon keeps the gradient finite for a batch predicted exactly.
    return torch.sqrt(F.mse_loss(prediction, target) + 1e-12)


class Task:
    """Base of the task types; see the module docstring for what each one does."""

    name = ""
    sigmoid = True  # independent sigmoid outputs: the head's last bias keeps its prior initialisation
    default_select = ""
    select_metrics: tuple[str, ...] = ()

    def __init__(self, label_names: Sequence[str]):
        self.label_names = list(label_names)

    @property
    def n_outputs(self) -> int:
        return len(self.label_names)

    @property
    def output_names(self) -> list[str]:
        """Column names of the outputs in ``predictions.parquet``."""
        return self.label_names

    def fit(self, manifest: Manifest, train_ds: Any) -> None:
        """Fit what depends on the training split (regression: the target scaling)."""

    def targets(self, manifest: Manifest, ds: Any) -> np.ndarray:
        """The training targets of a dataset's items (what ``ds.labels`` must hold): its multi-hot labels,
        checked, or for regression the standardised target."""
        return ds.labels

    def class_weights(self, targets: np.ndarray, mode: str) -> Tensor | None:
        return class_weights(targets, mode)

    def loss(self, logits: Tensor, targets: Tensor, weights: Tensor | None) -> Tensor:
        return weighted_bce(logits, targets, weights)

    def activate(self, logits: Tensor) -> Tensor:
        """Logits to outputs on the model's scale (probabilities, standardised values)."""
        return torch.sigmoid(logits)

    def from_model_scale(self, outputs: np.ndarray) -> np.ndarray:
        return outputs

    def outputs(self, logits: Tensor) -> np.ndarray:
        return self.from_model_scale(self.activate(logits.float()).cpu().numpy())

    def truth(self, targets: np.ndarray) -> np.ndarray:
        """``ds.labels`` in the form the metrics take."""
        return targets

    def epoch_metrics(self, truth: np.ndarray, outputs: np.ndarray) -> dict[str, float | None]:
        """Flat dev metrics of one epoch, for the history and the choice of the best epoch."""
        raise NotImplementedError

    def decide(self, truth: np.ndarray, outputs: np.ndarray, rule: str = "f1_micro", try_top1: bool = True):
        """The decision rule chosen on dev (``rule`` and ``try_top1``: training.decision and top1_rule,
        multi-label only)."""
        raise NotImplementedError

    def metrics(self, truth: np.ndarray, outputs: np.ndarray, decision) -> dict[str, Any]:
        raise NotImplementedError

    def pooled_metrics(self, parts: Sequence[tuple[np.ndarray, np.ndarray, Any]]) -> dict[str, Any]:
        """Metrics of several parts (k-fold test folds) taken together, each with its own decision."""
        truth = np.concatenate([p[0] for p in parts])
        outputs = np.concatenate([p[1] for p in parts])
        return self.metrics(truth, outputs, parts[0][2])

    def check_select(self, metric: str) -> str:
        metric = self.default_select if metric == "auto" else metric
        if metric not in (*self.select_metrics, "loss"):
            raise ValueError(f"training.select: {metric!r} is not a {self.name} metric; expected one of "
                             f"{['auto', *self.select_metrics, 'loss']}")
        return metric

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name}


class MultiLabelTask(Task):
    name = "multilabel"
    default_select = "f1_micro"
    select_metrics = ("f1_micro",)

    def epoch_metrics(self, truth, outputs):
        # F1-micro at the best global threshold for this epoch: the way the model will be used.
        threshold, f1 = best_threshold(truth, outputs)
        return {"f1_micro": f1, "threshold": threshold, "f1_micro_at_0.5": f1_micro(truth, outputs >= 0.5)}

    def decide(self, truth, outputs, rule="f1_micro", try_top1=True):
        return choose_decision(truth, outputs, rule, try_top1)

    def metrics(self, truth, outputs, decision):
        """With the decision chosen on dev, and beside them the papers' protocol (``<metric>_at_0.5``)."""
        return {**multilabel_metrics(truth, decision.apply(outputs)), **paper_protocol_metrics(truth, outputs)}

    def pooled_metrics(self, parts):
        truth = np.concatenate([p[0] for p in parts])
        pred = np.concatenate([p[2].apply(p[1]) for p in parts])
        return {**multilabel_metrics(truth, pred),
                **paper_protocol_metrics(truth, np.concatenate([p[1] for p in parts]))}


class SingleLabelTask(Task):
    """Binary and multiclass: exactly one label per item; for binary, ``label_names[1]`` is the positive class.

    ``select`` (training.select) names the metric the decision is tuned for when it is one of
    SINGLE_LABEL_DECISION_METRICS; otherwise (auto, auc, loss) the decision is tuned for accuracy.
    """

    default_select = "accuracy"
    select_metrics = ("accuracy", "balanced_accuracy", "auc", "f1_macro")

    def __init__(self, label_names: Sequence[str], name: str = "multiclass", loss: str = "sigmoid",
                 select: str = "auto"):
        super().__init__(label_names)
        self.decision_metric = select if select in SINGLE_LABEL_DECISION_METRICS else "accuracy"
        if loss not in SINGLE_LABEL_LOSSES:
            raise ValueError(f"training.single_label_loss: {loss!r} is not one of {SINGLE_LABEL_LOSSES}")
        if name == "binary" and len(self.label_names) != 2:
            raise ValueError(f"a binary task needs exactly 2 label names, got {self.label_names}")
        if len(self.label_names) < 2:
            raise ValueError(f"a {name} task needs at least 2 label names, got {self.label_names}")
        self.name = name
        self.loss_kind = loss
        self.sigmoid = loss == "sigmoid"

    def targets(self, manifest, ds):
        bad = np.flatnonzero(np.asarray(ds.labels).sum(axis=1) != 1)
        if len(bad):
            labels = manifest.frame.set_index("id").loc[ds.ids[bad[0]], "labels"]
            raise ValueError(f"item {ds.ids[bad[0]]!r}: a {self.name} task needs exactly one label per item, "
                             f"got {list(labels)} ({len(bad)} such items)")
        return ds.labels

    def loss(self, logits, targets, weights):
        if self.sigmoid:
            return weighted_bce(logits, targets, weights)
        return F.cross_entropy(logits, targets.argmax(dim=1), weight=weights)

    def activate(self, logits):
        if self.sigmoid:
            probs = torch.sigmoid(logits)
            return probs / probs.sum(dim=1, keepdim=True)
        return torch.softmax(logits, dim=1)

    def truth(self, targets):
        return np.asarray(targets).argmax(axis=1)

    def epoch_metrics(self, truth, outputs):
        # At this epoch's own tuned decision: the way the model will be used.
        metrics = self.metrics(truth, outputs, self.decide(truth, outputs))
        del metrics["per_class_accuracy"]
        return metrics

    def decide(self, truth, outputs, rule="f1_micro", try_top1=True):
        """Tuned for ``decision_metric``; ``rule`` and ``try_top1`` are multi-label settings."""
        return choose_single_label_decision(truth, outputs, self.decision_metric)

    def metrics(self, truth, outputs, decision):
        return single_label_metrics(truth, outputs, self.label_names, decision.apply(outputs))

    def pooled_metrics(self, parts):
        outputs = np.concatenate([p[1] for p in parts])
        pred = np.concatenate([p[2].apply(p[1]) for p in parts])
        return single_label_metrics(np.concatenate([p[0] for p in parts]), outputs, self.label_names, pred)

    def to_dict(self):
        return {"name": self.name, "loss": self.loss_kind}


class RegressionTask(Task):
    """One float per item, the manifest's ``target`` column, learnt standardised with the RMSE loss."""

    name = "regression"
    sigmoid = False
    default_select = "rmse"
    select_metrics = ("rmse", "mae", "mape", "r2", "auc")

    def __init__(self, mean: float = 0.0, std: float = 1.0, auc_threshold: float | None = None):
        super().__init__([])
        self.mean, self.std, self.auc_threshold = float(mean), float(std), auc_threshold

    @property
    def n_outputs(self) -> int:
        return 1

    @property
    def output_names(self) -> list[str]:
        return ["prediction"]

    @staticmethod
    def raw_targets(manifest: Manifest, ids: Sequence[str]) -> np.ndarray:
        if TARGET_COLUMN not in manifest.frame.columns:
            raise ValueError(f"a regression manifest needs a float {TARGET_COLUMN!r} column")
        values = pd.to_numeric(manifest.frame.set_index(manifest.frame["id"].astype(str))[TARGET_COLUMN],
                               errors="coerce").reindex(list(ids)).to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise ValueError(f"item {ids[bad[0]]!r}: regression target is missing or not a number "
                             f"({len(bad)} such items)")
        return values

    def fit(self, manifest, train_ds):
        values = self.raw_targets(manifest, train_ds.ids)
        self.mean = float(values.mean()) if len(values) else 0.0
        std = float(values.std()) if len(values) > 1 else 0.0
        self.std = std if std > 0 else 1.0

    def targets(self, manifest, ds):
        values = self.raw_targets(manifest, ds.ids)
        return ((values - self.mean) / self.std).astype(np.float32).reshape(-1, 1)

    def class_weights(self, targets, mode):
        return None

    def loss(self, logits, targets, weights):
        return rmse_loss(logits[:, 0], targets[:, 0])

    def activate(self, logits):
        return logits[:, 0]

    def from_model_scale(self, outputs):
        return np.asarray(outputs, np.float64).reshape(-1) * self.std + self.mean

    def truth(self, targets):
        return self.from_model_scale(np.asarray(targets)[:, 0])

    def epoch_metrics(self, truth, outputs):
        return regression_metrics(truth, outputs, self.auc_threshold)

    def decide(self, truth, outputs, rule="f1_micro", try_top1=True):
        return ValueDecision()

    def metrics(self, truth, outputs, decision):
        return regression_metrics(truth, decision.apply(outputs), self.auc_threshold)

    def check_select(self, metric):
        if metric == "auc" and self.auc_threshold is None:
            raise ValueError("training.select: 'auc' needs training.auc_threshold for a regression task")
        return super().check_select(metric)

    def to_dict(self):
        return {"name": self.name, "target_mean": self.mean, "target_std": self.std,
                "auc_threshold": self.auc_threshold}


def make_task(name: str, label_names: Sequence[str], single_label_loss: str = "sigmoid",
              auc_threshold: float | None = None, select: str = "auto") -> Task:
    """The task of a manifest (``manifest.task``), before ``fit`` on the training split; ``select``
    (training.select) is the metric single-label decisions are tuned for (see SingleLabelTask)."""
    if name == "multilabel":
        return MultiLabelTask(label_names)
    if name in ("binary", "multiclass"):
        return SingleLabelTask(label_names, name, single_label_loss, select)
    if name == "regression":
        return RegressionTask(auc_threshold=auc_threshold)
    raise ValueError(f"task {name!r} is not one of multilabel, binary, multiclass, regression")


def task_from_dict(raw: Mapping[str, Any] | None, label_names: Sequence[str]) -> Task:
    """The fitted task saved in a checkpoint's config (None: a multi-label checkpoint from before tasks)."""
    raw = dict(raw or {"name": "multilabel"})
    if raw["name"] == "regression":
        return RegressionTask(raw["target_mean"], raw["target_std"], raw.get("auc_threshold"))
    return make_task(raw["name"], label_names, raw.get("loss", "sigmoid"))


def selection_key(metrics: Mapping[str, Any], metric: str) -> tuple[float, float]:
    """Sort key of an epoch (larger is better): the selection metric, then the lower dev loss on ties
    (small dev sets such as a fold of Ads-Parallelity give many ties in accuracy)."""
    value = metrics.get(metric)
    value = -np.inf if value is None else (-value if metric in LOWER_IS_BETTER else value)
    return float(value), -float(metrics["loss"])
