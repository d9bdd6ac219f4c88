"""Multi-label metrics (F1 micro / macro / samples, as MM-IMDb reports them) and decision rules."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import f1_score

THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)


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


def binarize(probs: np.ndarray, threshold: float, top1: bool = False) -> np.ndarray:
    """Labels with probability >= threshold; with ``top1`` each item also keeps its most likely label."""
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


@dataclass
class Decision:
    """How probabilities become labels, chosen on dev: a global threshold, and whether top-1 is forced."""

    threshold: float
    top1: bool
    dev_f1_micro: float
    dev_f1_micro_plain: float  # best F1 with the threshold alone
    dev_f1_micro_top1: float | None  # best F1 with the top-1 rule as well (None when not tried)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        return binarize(probs, self.threshold, self.top1)

    def to_dict(self) -> dict:
        return asdict(self)


def choose_decision(y_true: np.ndarray, probs: np.ndarray, try_top1: bool = True,
                    grid: np.ndarray = THRESHOLDS) -> Decision:
    """Tune the threshold with and without the at-least-top-1 rule; keep the rule only if it raises dev F1-micro."""
    t_plain, f_plain = best_threshold(y_true, probs, False, grid)
    if not try_top1:
        return Decision(t_plain, False, f_plain, f_plain, None)
    t_top1, f_top1 = best_threshold(y_true, probs, True, grid)
    if f_top1 > f_plain:
        return Decision(t_top1, True, f_top1, f_plain, f_top1)
    return Decision(t_plain, False, f_plain, f_plain, f_top1)
