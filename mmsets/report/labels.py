"""Per-label results and precision-recall curves, from the runs' test predictions.

For the best configuration and the best of each model family: each label's precision, recall, F1 and
average precision (AP) with the run's own decision (multi-label: its threshold and top-1 rule; single-label:
its tuned threshold or prior correction, a k-fold row its fold's), mean ± std over seeds, and the support
(test items with the label). k-fold multi-label runs decide per fold and are left out. Metrics are
scikit-learn's.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, precision_recall_fscore_support

from mmsets.metrics import aggregate, binarize
from mmsets.report.examples import decided_classes, thresholds_of, test_predictions
from mmsets.report.tables import cell

METRICS = ("precision", "recall", "f1", "ap")


def run_outputs(run: dict, label_names: list[str], task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(truth (N, C) 0/1, probabilities (N, C), decisions (N, C) 0/1) of a run's test items, or None."""
    if task not in ("multilabel", "binary", "multiclass") or not label_names:
        return None
    preds = test_predictions(run)
    if preds is None or "labels" not in preds.columns or not set(label_names) <= set(preds.columns):
        return None
    probs = preds[label_names].to_numpy(float)
    index = {name: k for k, name in enumerate(label_names)}
    truth = np.zeros_like(probs, dtype=np.int64)
    for i, labels in enumerate(preds["labels"]):
        for label in labels if labels is not None else []:
            if label in index:
                truth[i, index[label]] = 1
    if task == "multilabel":
        thresholds = thresholds_of(run["threshold"], len(label_names))
        if thresholds is None:  # k-fold: one decision per fold
            return None
        decided = binarize(probs, thresholds, run["top1"])
    else:
        decided = np.zeros_like(truth)
        decided[np.arange(len(probs)), decided_classes(preds, run, label_names)] = 1
    return truth, probs, decided


def _label_scores(truth: np.ndarray, probs: np.ndarray, decided: np.ndarray) -> dict[str, dict[str, float | None]]:
    precision, recall, f1, _ = precision_recall_fscore_support(truth, decided, average=None, zero_division=0)
    scores = {}
    for k in range(truth.shape[1]):
        ap = float(average_precision_score(truth[:, k], probs[:, k])) if truth[:, k].any() else None
        scores[k] = {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]), "ap": ap}
    return scores


def _selected(configs: list[dict], families: list[dict]) -> list[dict]:
    """The best configuration, then the best of every other family."""
    chosen = [c for c in configs[:1] if c["n"]]
    return chosen + [c for c in families if c["name"] not in {x["name"] for x in chosen}]


def per_label(configs: list[dict], families: list[dict], runs: list[dict], label_names: list[str],
              task: str) -> dict | None:
    """{"labels": [{label, support}], "configs": [{name, family, scores: {label: {metric: cell}}}],
    "pooled": {config name: (truth, probs) of all its runs} for the curves}; None when no run can say."""
    by_config: dict[str, list[dict]] = {}
    for run in runs:
        by_config.setdefault(run["config"], []).append(run)
    out, pooled, support = [], {}, None
    for config in _selected(configs, families):
        outputs = [o for o in (run_outputs(r, label_names, task) for r in by_config.get(config["name"], [])
                               if r["status"] == "ok") if o is not None]
        if not outputs:
            continue
        per_run = [_label_scores(*o) for o in outputs]
        scores = {}
        for k, name in enumerate(label_names):
            values = [{m: s[k][m] for m in METRICS if s[k][m] is not None} for s in per_run]
            mean, std = aggregate(values)
            scores[name] = {m: cell(mean.get(m), std.get(m) if len(values) > 1 else None) for m in METRICS}
        out.append({"name": config["name"], "family": config["family"], "n": len(outputs), "scores": scores})
        pooled[config["name"]] = (np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs]))
        if support is None:
            support = outputs[0][0].sum(axis=0)
    if not out:
        return None
    labels = [{"label": name, "support": int(support[k])} for k, name in enumerate(label_names)]
    return {"labels": labels, "configs": out, "pooled": pooled}


def pr_curve_points(truth: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Micro-averaged precision-recall curve (every item-label pair one decision) and its AP."""
    if not truth.any():
        return None
    precision, recall, _ = precision_recall_curve(truth.ravel(), probs.ravel())
    return recall, precision, float(average_precision_score(truth.ravel(), probs.ravel()))

