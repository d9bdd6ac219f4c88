"""Which metrics a task reports, which one ranks the runs, and how each is shown.

The report of one dataset has one task (the manifest's); its metric columns come from here so that
tables, figures and the ranking agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

TASKS = ("multilabel", "binary", "multiclass", "regression")


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    fmt: str = "pct"  # pct: a [0, 1] score as a percentage; num: in the target's units; fixed: 3 decimals
    higher: bool = True

    @property
    def title(self) -> str:
        return f"{self.label} (%)" if self.fmt == "pct" else self.label


_SINGLE = (Metric("accuracy", "accuracy"), Metric("balanced_accuracy", "balanced accuracy"),
           Metric("auc", "AUC"), Metric("f1_macro", "F1-macro"))
METRICS: dict[str, tuple[Metric, ...]] = {
    # The decision tuned on dev, then the papers' protocol (threshold 0.5, no top-1 rule) beside it.
    "multilabel": (Metric("f1_micro", "F1-micro"), Metric("f1_macro", "F1-macro"), Metric("f1_samples", "F1-samples"),
                   Metric("f1_micro_at_0.5", "F1-micro at 0.5"), Metric("f1_macro_at_0.5", "F1-macro at 0.5")),
    "binary": _SINGLE,
    "multiclass": _SINGLE,
    "regression": (Metric("rmse", "RMSE", "num", False), Metric("mae", "MAE", "num", False),
                   Metric("mape", "MAPE", "pct", False), Metric("r2", "R²", "fixed"), Metric("auc", "AUC")),
}
# Shown only when some run has them: the AUC needs training.auc_threshold; runs from before the papers'
# protocol was recorded have no figures at 0.5.
OPTIONAL = {("regression", "auc"), ("multilabel", "f1_micro_at_0.5"), ("multilabel", "f1_macro_at_0.5")}


def task_of(manifest_task: str | None, runs: Iterable[dict]) -> str:
    """The manifest's task; without a manifest, the task most runs name; else multi-label."""
    if manifest_task in TASKS:
        return manifest_task
    named = [r["task"] for r in runs if r.get("task") in TASKS]
    return max(set(named), key=named.count) if named else "multilabel"


def main_metric(task: str) -> Metric:
    return METRICS.get(task, METRICS["multilabel"])[0]


def columns(task: str, runs: Iterable[dict] = ()) -> list[Metric]:
    """The test-metric columns of ``task``; optional ones only when a run has a value for them."""
    runs = list(runs)
    out = []
    for metric in METRICS.get(task, METRICS["multilabel"]):
        if (task, metric.key) in OPTIONAL and not any(_value(r.get("test"), metric.key) is not None for r in runs):
            continue
        out.append(metric)
    return out


def _value(scores: Any, key: str) -> Any:
    return scores.get(key) if isinstance(scores, dict) else None


def order_key(value: float | None, metric: Metric) -> tuple[bool, float]:
    """Sort key, best first, missing values last."""
    if value is None:
        return True, 0.0
    return False, -value if metric.higher else value
