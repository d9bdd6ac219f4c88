"""Metrics per task and the decision rules that turn model outputs into predictions.

- multi-label: F1 micro / macro / samples, as MM-IMDb reports them (DMMS Table 3, DM2S2 Table 1);
- single-label (binary, multiclass): accuracy, per-class accuracy (recall of each class) and their
  mean, ROC AUC, as Ads-Parallelity reports them (DMMS Table 2);
- regression: RMSE, MAPE (and AUC of a binarised target), as DM2S2 reports Ad-LP (Table 4).

``aggregate`` and ``aggregate_runs`` give the mean and standard deviation over folds or seeds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.metrics import f1_score, mean_absolute_error, mean_absolute_percentage_error, roc_auc_score

from mmsets.plan.vocab import DECISION_RULES, SINGLE_LABEL_DECISION_METRICS

THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)
PAPER_THRESHOLD = 0.5  # the papers' protocol: a label is predicted when its probability is at least 0.5


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """F1 micro / macro / samples of 0/1 matrices (N, C); undefined ratios count as 0."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)
    return {
        f"f1_{average}": float(f1_score(y_true, y_pred, average=average, zero_division=0))
        for average in ("micro", "macro", "samples")
    }


def f1_micro(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """sklearn's F1-micro (zero_division=0) in plain numpy: threshold search calls it many times."""
    y_true = np.asarray(y_true) > 0
    y_pred = np.asarray(y_pred) > 0
    tp = np.count_nonzero(y_true & y_pred)
    denominator = np.count_nonzero(y_true) + np.count_nonzero(y_pred)
    return 2.0 * tp / denominator if denominator else 0.0


def binarize(probs: np.ndarray, threshold: float | np.ndarray, top1: bool = False) -> np.ndarray:
    """Labels with probability >= threshold (one, or one per class); with ``top1`` each item also keeps its
    most likely label."""
    pred = (probs >= threshold).astype(np.int64)
    if top1 and probs.shape[0]:
        pred[np.arange(probs.shape[0]), probs.argmax(axis=1)] = 1
    return pred


def best_threshold(y_true: np.ndarray, probs: np.ndarray, top1: bool = False,
                   grid: np.ndarray = THRESHOLDS) -> tuple[float, float]:
    """The single global threshold on ``grid`` maximising F1-micro (lowest one on ties) and that F1."""
    scores = [f1_micro(y_true, binarize(probs, t, top1)) for t in grid]
    k = int(np.argmax(scores))
    return float(grid[k]), float(scores[k])


def best_class_thresholds(y_true: np.ndarray, probs: np.ndarray, grid: np.ndarray = THRESHOLDS) -> np.ndarray:
    """One threshold per class on ``grid``, each maximising that class's F1 (lowest on ties): together
    they maximise F1-macro, the mean of the classes' F1."""
    y_true = np.asarray(y_true) > 0
    pred = np.asarray(probs)[None, :, :] >= grid[:, None, None]  # (thresholds, N, C)
    tp = (pred & y_true[None]).sum(axis=1)
    denominator = pred.sum(axis=1) + y_true.sum(axis=0)[None]
    f1 = np.divide(2.0 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0)
    best = f1.max(axis=0)
    thresholds = np.full(f1.shape[1], PAPER_THRESHOLD)  # a class no threshold helps on dev (F1 0) keeps 0.5
    for c in np.flatnonzero(best > 0):
        tied = np.flatnonzero(f1[:, c] == best[c])
        thresholds[c] = grid[tied[len(tied) // 2]]  # the middle of the tied range, not its lowest end
    return thresholds


def f1_macro(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(f1_score(np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int), average="macro",
                          zero_division=0))




@dataclass
class Decision:
    """How probabilities become labels (multi-label), chosen on dev by ``rule``:

    - ``f1_micro``: one global threshold maximising dev F1-micro;
    - ``f1_macro``: one threshold per class, each maximising its dev F1 (so F1-macro);
    - ``paper``: the papers' protocol, 0.5 for every class, nothing tuned.

    With the first two, the at-least-top-1 rule is kept when it raises the rule's dev score.
    """

    threshold: float | list[float]
    top1: bool
    rule: str = "f1_micro"
    dev_score: float | None = None  # the rule's dev metric with this decision
    dev_score_plain: float | None = None  # with the thresholds alone
    dev_score_top1: float | None = None  # with the top-1 rule as well (None when not tried)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        return binarize(probs, np.asarray(self.threshold), self.top1)

    def to_dict(self) -> dict:
        return asdict(self)


def choose_decision(y_true: np.ndarray, probs: np.ndarray, rule: str = "f1_micro", try_top1: bool = True,
                    grid: np.ndarray = THRESHOLDS) -> Decision:
    """Tune the decision ``rule`` (see Decision) on dev, with and without the top-1 rule."""
    if rule not in DECISION_RULES:
        raise ValueError(f"training.decision: {rule!r} is not one of {list(DECISION_RULES)}")
    if rule == "paper":
        score = f1_micro(y_true, binarize(probs, PAPER_THRESHOLD))
        return Decision(PAPER_THRESHOLD, False, rule, score, score)
    if rule == "f1_micro":
        t_plain, f_plain = best_threshold(y_true, probs, False, grid)
        if not try_top1:
            return Decision(t_plain, False, rule, f_plain, f_plain)
        t_top1, f_top1 = best_threshold(y_true, probs, True, grid)
        if f_top1 > f_plain:
            return Decision(t_top1, True, rule, f_top1, f_plain, f_top1)
        return Decision(t_plain, False, rule, f_plain, f_plain, f_top1)
    if not len(y_true):
        raise ValueError("decision f1_macro: no dev items to tune the thresholds on")
    thresholds = best_class_thresholds(y_true, probs, grid)
    f_plain = f1_macro(y_true, binarize(probs, thresholds))
    f_top1 = f1_macro(y_true, binarize(probs, thresholds, True)) if try_top1 else None
    top1 = f_top1 is not None and f_top1 > f_plain
    return Decision(thresholds.tolist(), top1, rule, f_top1 if top1 else f_plain, f_plain, f_top1)


def paper_protocol_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """F1 micro / macro / samples at the papers' threshold of 0.5, no top-1 rule: ``<metric>_at_0.5``."""
    return {f"{k}_at_0.5": v for k, v in multilabel_metrics(y_true, binarize(probs, PAPER_THRESHOLD)).items()}


# ------------------------------------------------------------------------------ single-label


def _auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC of ``score`` for the 0/1 ``positive``; None when only one class is present."""
    positive = np.asarray(positive).astype(bool)
    if positive.all() or not positive.any():
        return None
    return float(roc_auc_score(positive, score))


def class_counts(y_true: np.ndarray, pred: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class (each (C,)): the items predicted it rightly, the items predicted it, its members."""
    y_true, pred = np.asarray(y_true, np.int64), np.asarray(pred, np.int64)
    return (np.bincount(pred[pred == y_true], minlength=n_classes), np.bincount(pred, minlength=n_classes),
            np.bincount(y_true, minlength=n_classes))


def decision_score(metric: str, hits: np.ndarray, predicted: np.ndarray, members: np.ndarray) -> np.ndarray:
    """``accuracy``, ``balanced_accuracy`` (the mean recall of the classes present) or ``f1_macro`` (over every
    class, an undefined F1 counting 0) from ``class_counts`` (..., C); leading axes are candidate decisions."""
    hits, predicted = np.asarray(hits, np.float64), np.asarray(predicted, np.float64)
    members = np.broadcast_to(np.asarray(members, np.float64), hits.shape)
    if metric == "accuracy":
        n = members.sum(axis=-1)
        return np.divide(hits.sum(axis=-1), n, out=np.zeros(n.shape), where=n > 0)
    if metric == "balanced_accuracy":
        present = members > 0
        recall = np.divide(hits, members, out=np.zeros(hits.shape), where=present)
        n_present = present.sum(axis=-1)
        return np.divide(recall.sum(axis=-1), n_present, out=np.zeros(n_present.shape), where=n_present > 0)
    if metric == "f1_macro":
        denominator = predicted + members
        return np.divide(2.0 * hits, denominator, out=np.zeros(hits.shape), where=denominator > 0).mean(axis=-1)
    raise ValueError(f"{metric!r} is not one of {SINGLE_LABEL_DECISION_METRICS}")


def single_label_metrics(y_true: np.ndarray, probs: np.ndarray, label_names: Sequence[str],
                         pred: np.ndarray) -> dict[str, Any]:
    """Accuracy, per-class accuracy, ROC AUC and F1-macro of class indices (N,) predicted as ``pred`` (N,)
    from probabilities (N, C).

    ``per_class_accuracy`` is each class's recall (the Ads-Parallelity papers' "per-class accuracy"; None
    for a class absent from ``y_true``) and ``balanced_accuracy`` their mean over the classes present.
    ``auc`` is the positive (second) class's ROC AUC for two classes, else the macro one-vs-rest AUC over
    the classes that are present with both outcomes; None when undefined: it reads the probabilities, not
    ``pred``. ``n_predicted_classes`` counts the classes ``pred`` names (1: the run predicts one class only)
    and ``accuracy_argmax`` is the accuracy of the most probable class, the papers' protocol.
    """
    y_true = np.asarray(y_true, np.int64)
    probs = np.asarray(probs, np.float64)
    pred = np.asarray(pred, np.int64)
    n_classes = len(label_names)
    hits, predicted, members = class_counts(y_true, pred, n_classes)
    recall = {name: float(hits[k] / members[k]) if members[k] else None for k, name in enumerate(label_names)}
    if n_classes == 2:
        auc = _auc(y_true == 1, probs[:, 1]) if len(y_true) else None
    else:
        per_class = [_auc(y_true == k, probs[:, k]) for k in range(n_classes)] if len(y_true) else []
        per_class = [a for a in per_class if a is not None]
        auc = float(np.mean(per_class)) if per_class else None
    return {
        "accuracy": float(decision_score("accuracy", hits, predicted, members)),
        "balanced_accuracy": float(decision_score("balanced_accuracy", hits, predicted, members)),
        "auc": auc,
        "f1_macro": float(decision_score("f1_macro", hits, predicted, members)),
        "per_class_accuracy": recall,
        "n_predicted_classes": int(np.count_nonzero(predicted)),
        "accuracy_argmax": float((probs.argmax(axis=1) == y_true).mean()) if len(y_true) else 0.0,
    }


def best_binary_threshold(y_true: np.ndarray, p_positive: np.ndarray, metric: str = "accuracy"
                          ) -> tuple[float, float]:
    """The threshold on the positive class's probability maximising ``metric`` (see ``decision_score``) and
    that score. The candidates lie halfway between neighbouring distinct probabilities, and beyond both
    ends, so a model whose probabilities all sit on one side of 0.5 still gets a cut through them; on ties
    the middle of the tied candidates, as ``best_class_thresholds`` does."""
    p = np.asarray(p_positive, np.float64)
    if not len(p):
        return PAPER_THRESHOLD, 0.0
    order = np.argsort(-p, kind="stable")
    p, positive = p[order], (np.asarray(y_true) == 1)[order]
    n, n_positive = len(p), int(positive.sum())
    cuts = np.concatenate([[0], np.flatnonzero(p[1:] < p[:-1]) + 1, [n]])  # items each candidate calls positive
    above_all = (p[0] + 1.0) / 2 if p[0] < 1.0 else np.nextafter(1.0, np.inf)
    thresholds = np.concatenate([[above_all], (p[cuts[1:-1] - 1] + p[cuts[1:-1]]) / 2, [p[-1] / 2]])
    true_positive = np.concatenate([[0], np.cumsum(positive)])[cuts]
    hits = np.stack([(n - cuts) - (n_positive - true_positive), true_positive], axis=1)
    predicted = np.stack([n - cuts, cuts], axis=1)
    scores = decision_score(metric, hits, predicted, np.array([n - n_positive, n_positive]))
    tied = np.flatnonzero(scores >= scores.max() - 1e-12)
    k = tied[len(tied) // 2]
    return float(thresholds[k]), float(scores[k])


PRIOR_POWERS = np.round(np.arange(0.0, 2.001, 0.1), 2)


def dev_class_priors(y_true: np.ndarray, n_classes: int) -> np.ndarray:
    """The classes' shares of the dev items, each count plus one so an absent class keeps a finite log."""
    counts = np.bincount(np.asarray(y_true, np.int64), minlength=n_classes) + 1.0
    return counts / counts.sum()


def choose_single_label_decision(y_true: np.ndarray, probs: np.ndarray, metric: str = "accuracy",
                                 powers: np.ndarray = PRIOR_POWERS
                                 ) -> ThresholdDecision | PriorDecision | ArgmaxDecision:
    """The binary or multi-class decision tuned on dev for ``metric`` (one of SINGLE_LABEL_DECISION_METRICS).

    Binary: a threshold on the positive class's probability (``best_binary_threshold``). Multi-class: the
    probabilities divided by the dev class priors to the power in ``powers`` that scores best, kept only
    when it beats the plain argmax on dev (ties among powers: the middle one); else the argmax.
    """
    if metric not in SINGLE_LABEL_DECISION_METRICS:
        raise ValueError(f"a single-label decision is tuned for one of {SINGLE_LABEL_DECISION_METRICS}, "
                         f"not {metric!r}")
    y_true, probs = np.asarray(y_true, np.int64), np.asarray(probs, np.float64)
    n_classes = probs.shape[1]
    argmax_score = float(decision_score(metric, *class_counts(y_true, probs.argmax(axis=1), n_classes)))
    if n_classes == 2:
        threshold, score = best_binary_threshold(y_true, probs[:, 1], metric)
        return ThresholdDecision(threshold, metric, score, argmax_score)
    log_priors = np.log(dev_class_priors(y_true, n_classes))
    log_probs = np.log(np.maximum(probs, np.finfo(np.float64).tiny))
    scores = np.array([decision_score(metric, *class_counts(y_true, (log_probs - a * log_priors).argmax(axis=1),
                                                             n_classes)) for a in powers])
    if not len(y_true) or scores.max() <= argmax_score + 1e-12:
        return ArgmaxDecision()
    tied = np.flatnonzero(scores >= scores.max() - 1e-12)
    power = float(powers[tied[len(tied) // 2]])
    return PriorDecision((-power * log_priors).tolist(), metric, float(scores.max()), argmax_score, power,
                         np.exp(log_priors).tolist())


def grouped_accuracy(y_true: np.ndarray, pred: np.ndarray, groups: Sequence[Any]) -> dict[str, float]:
    """Accuracy of the predicted classes within each group of items (a table's fine-grained classes:
    Ads-Parallelity's per-class accuracy over non-parallel, parallel-equivalent, parallel-non-equivalent)."""
    y_true, pred = np.asarray(y_true), np.asarray(pred)
    groups = np.asarray([None if g is None else str(g) for g in groups], dtype=object)
    return {g: float((pred[groups == g] == y_true[groups == g]).mean())
            for g in sorted({g for g in groups if g is not None})}


# -------------------------------------------------------------------------------- regression


def regression_metrics(y_true: np.ndarray, pred: np.ndarray, auc_threshold: float | None = None) -> dict[str, Any]:
    """RMSE, MAE, MAPE (scikit-learn's: targets near 0 make it explode) and R^2; with ``auc_threshold``
    also the ROC AUC of the predictions for ``y_true > auc_threshold`` (DM2S2 reports one for Ad-LP
    without saying how it binarised the conversion rate)."""
    y_true = np.asarray(y_true, np.float64).reshape(-1)
    pred = np.asarray(pred, np.float64).reshape(-1)
    if not len(y_true):
        return {"rmse": 0.0, "mae": 0.0, "mape": 0.0, "r2": None}
    residual = y_true - pred
    total = float(((y_true - y_true.mean()) ** 2).sum())
    out = {
        "rmse": float(np.sqrt(np.mean(residual ** 2))),
        "mae": float(mean_absolute_error(y_true, pred)),
        "mape": float(mean_absolute_percentage_error(y_true, pred)),
        "r2": float(1.0 - (residual ** 2).sum() / total) if total > 0 else None,
    }
    if auc_threshold is not None:
        out["auc"] = _auc(y_true > auc_threshold, pred)
    return out


# ------------------------------------------------------------------------------- aggregation


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def aggregate(dicts: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of every numeric leaf.

    Nested dicts (per-class accuracy) are aggregated leaf by leaf; a leaf that is None or missing in
    some dicts is averaged over the others, and is None when no dict has a number for it.
    Returns ``(mean, std)`` shaped like the inputs.
    """
    keys: list[str] = []
    for d in dicts:
        keys += [k for k in d if k not in keys]
    mean: dict[str, Any] = {}
    std: dict[str, Any] = {}
    for key in keys:
        values = [d.get(key) for d in dicts]
        nested = [v for v in values if isinstance(v, Mapping)]
        if nested:
            mean[key], std[key] = aggregate(nested)
            continue
        numbers = [n for n in map(_number, values) if n is not None]
        if not numbers and any(v is not None for v in values):
            continue  # not a metric (a string, a list)
        mean[key] = float(np.mean(numbers)) if numbers else None
        std[key] = float(np.std(numbers, ddof=1)) if len(numbers) > 1 else (0.0 if numbers else None)
    return mean, std


def aggregate_runs(metrics_list: Sequence[Mapping[str, Any]], splits: Sequence[str] = ("dev", "test")
                   ) -> dict[str, Any]:
    """Mean and standard deviation over runs (e.g. the seeds of one experiment) of each split's metrics.

    ``metrics_list`` holds the runs' ``metrics.json`` contents. Returns ``{"n_runs", "runs",
    "<split>": {"mean": {...}, "std": {...}}}``; a k-fold run contributes its mean over folds.
    """
    out: dict[str, Any] = {"n_runs": len(metrics_list), "runs": [m.get("run") for m in metrics_list]}
    for split in splits:
        mean, std = aggregate([m[split] for m in metrics_list if isinstance(m.get(split), Mapping)])
        out[split] = {"mean": mean, "std": std}
    return out


# ------------------------------------------------------------------ other tasks' decision rules


@dataclass
class ArgmaxDecision:
    """Single-label: the most probable class; nothing is tuned on dev (runs from before tuned decisions, and
    multi-class runs whose prior correction did not help on dev)."""

    rule: str = "argmax"
    threshold = None

    def apply(self, probs: np.ndarray) -> np.ndarray:
        return np.asarray(probs).argmax(axis=1)

    def to_dict(self) -> dict:
        return {"rule": self.rule}


@dataclass
class ThresholdDecision:
    """Binary: the positive class (``label_names[1]``) when its probability is at least ``threshold``, tuned
    on dev for ``metric`` (``choose_single_label_decision``); the argmax is the threshold 0.5."""

    threshold: float
    metric: str = "accuracy"
    dev_score: float | None = None  # ``metric`` on dev with this threshold
    dev_score_argmax: float | None = None  # and with the most probable class
    rule: str = "threshold"

    def apply(self, probs: np.ndarray) -> np.ndarray:
        return (np.asarray(probs)[:, 1] >= self.threshold).astype(np.int64)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PriorDecision:
    """Multi-class: the most probable class after adding ``log_offsets`` to the log-probabilities, i.e. the
    probabilities divided by the dev class priors to ``power``, tuned on dev for ``metric``. A k-fold
    run's folds combined carry the mean of their offsets, without one power or prior."""

    log_offsets: list[float]
    metric: str = "accuracy"
    dev_score: float | None = None
    dev_score_argmax: float | None = None
    power: float | None = None
    class_priors: list[float] | None = None
    rule: str = "prior"
    threshold = None

    def apply(self, probs: np.ndarray) -> np.ndarray:
        log_probs = np.log(np.maximum(np.asarray(probs, np.float64), np.finfo(np.float64).tiny))
        return (log_probs + np.asarray(self.log_offsets)).argmax(axis=1)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ValueDecision:
    """Regression: the predicted value itself."""

    rule: str = "value"
    threshold = None

    def apply(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values)

    def to_dict(self) -> dict:
        return {"rule": self.rule}


def decision_from_dict(raw: Mapping[str, Any]
                       ) -> Decision | ArgmaxDecision | ThresholdDecision | PriorDecision | ValueDecision:
    """The decision rule saved in a checkpoint's config (multi-label ones carry no ``rule`` key)."""
    rule = raw.get("rule")
    if rule is None or rule in DECISION_RULES:
        old = {"dev_f1_micro": "dev_score", "dev_f1_micro_plain": "dev_score_plain",
               "dev_f1_micro_top1": "dev_score_top1"}  # checkpoints written before the decision rules
        return Decision(**{old.get(k, k): v for k, v in raw.items()})
    rules = {"argmax": ArgmaxDecision, "value": ValueDecision, "threshold": ThresholdDecision,
             "prior": PriorDecision}
    if rule not in rules:
        raise ValueError(f"decision rule {rule!r} is not one of {sorted(rules)}")
    return rules[rule](**{k: v for k, v in raw.items() if k != "rule"})
