"""Ensembles of trained runs (``mmsets.plan.ensembles``): the members' dev and test outputs combined with
weights, and the decision tuned on the combined dev outputs. Nothing is trained and no model is run: the
members' ``predictions.parquet`` (their dev and test rows) and ``metrics.json`` are all a build reads.

A configuration (the runs that differ only in their seed) counts as the mean of its runs' outputs. A
family ensemble that takes ``best_per_family`` keeps, of each model family, the configuration with the best
mean dev main metric; ``weights: fitted`` then minimises the dev loss of the weighted mean (log-loss, or squared
error for regression) over non-negative weights summing to one (SLSQP). k-fold members are combined fold by
fold: each fold's dev items fit that fold's weights and decision, applied to its test items.

The ensemble's directory holds ``metrics.json`` (model ``ensemble``), ``predictions.parquet`` and
``ensemble.json`` (its members, weights and decision; docs/formats.md), which ``mmsets predict`` reads to
score new items with every member.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmsets.io import atomic_path, write_json
from mmsets.metrics import aggregate
from mmsets.plan.ensembles import BEST_PER_FAMILY, ENSEMBLE, EnsembleSpec
from mmsets.plan.layout import ENSEMBLE_MEMBERS, PREDICTIONS
from mmsets.runs.checkpoint import plain
from mmsets.runs.provenance import provenance
from mmsets.runs.record import RecordError, RunRecord
from mmsets.runs.scoring import combined_decision
from mmsets.tasks import LOWER_IS_BETTER, Task, make_task

log = logging.getLogger(__name__)

ROW_KEYS = ("id", "split", "fold", "labels", "target")  # predictions.parquet's columns that are not outputs


class EnsembleError(ValueError):
    """Members that cannot be combined (missing, unfinished, or scored on different items)."""


@dataclass
class Member:
    """One run an ensemble may use: its record and its dev and test rows."""

    name: str
    record: RunRecord
    rows: pd.DataFrame

    @property
    def output_names(self) -> list[str]:
        return [c for c in self.rows.columns if c not in ROW_KEYS]


def read_member(runs_dir: Path, name: str) -> Member:
    run_dir = runs_dir / name
    try:
        record = RunRecord.read(run_dir)
        rows = pd.read_parquet(run_dir / PREDICTIONS)
    except (RecordError, OSError, ValueError) as err:
        raise EnsembleError(f"run {name}: {err}") from None
    if not (rows["split"] == "dev").any():
        raise EnsembleError(f"run {name}: {PREDICTIONS} has no dev rows (a run from before mmsets kept them: "
                            f"train it again)")
    return Member(name, record, rows)


def member_task(member: Member) -> Task:
    training = member.record.training
    names = [] if member.record.task == "regression" else member.output_names
    return make_task(member.record.task or "multilabel", names, training.get("single_label_loss", "sigmoid"),
                     training.get("auc_threshold"), training.get("select", "auto"))


def main_metric(task: Task) -> str:
    """The metric that ranks configurations: the task's default selection metric (F1-micro, accuracy, RMSE)."""
    return task.default_select


def mean_dev(members: list[Member], metric: str) -> float | None:
    values = [member.record.dev.get(metric) for member in members]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def choose_configurations(spec: EnsembleSpec, by_configuration: dict[str, list[Member]], metric: str) -> list[str]:
    """The configurations the ensemble combines: those it names, or the best of each family by mean dev ``metric``."""
    if spec.members != BEST_PER_FAMILY:
        return list(spec.members)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    best: dict[str, tuple[float, str]] = {}
    for configuration, members in by_configuration.items():
        value = mean_dev(members, metric)
        family = members[0].record.model or "?"
        if value is not None and (family not in best or sign * value > best[family][0]):
            best[family] = (sign * value, configuration)
    if not best:
        raise EnsembleError(f"ensemble {spec.name}: no candidate has a dev {metric}")
    return [configuration for _, configuration in best.values()]


@dataclass
class Unit:
    """The items one decision is made for: the whole split, or one fold of a k-fold run."""

    fold: int | None
    ids: dict[str, list[str]]  # split -> item ids
    truth: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]  # split -> (configurations, items, outputs) or (configurations, items)
    rows: dict[str, pd.DataFrame]  # split -> the first member's rows, for the truth columns


def _units(configurations: list[str], by_configuration: dict[str, list[Member]], task: Task,
           output_names: list[str]) -> list[Unit]:
    first = by_configuration[configurations[0]][0]
    folds = sorted(first.rows["fold"].unique()) if "fold" in first.rows.columns else [None]
    units = []
    for fold in folds:
        ids, truth, outputs, rows = {}, {}, {}, {}
        for split in ("dev", "test"):
            reference = _part(first, fold, split)
            ids[split] = list(reference["id"].astype(str))
            rows[split] = reference
            truth[split] = _truth(task, reference, output_names)
            per_configuration = []
            for configuration in configurations:
                runs = [_part(m, fold, split) for m in by_configuration[configuration]]
                for member, part in zip(by_configuration[configuration], runs):
                    if list(part["id"].astype(str)) != ids[split]:
                        raise EnsembleError(f"run {member.name} was scored on other {split} items than run "
                                            f"{first.name}{'' if fold is None else f' (fold {fold})'}: "
                                            f"an ensemble combines runs of the same split")
                per_configuration.append(np.mean([_outputs(part, task, output_names) for part in runs], axis=0))
            outputs[split] = np.stack(per_configuration)
        units.append(Unit(fold, ids, truth, outputs, rows))
    return units


def _part(member: Member, fold: Any, split: str) -> pd.DataFrame:
    rows = member.rows[member.rows["split"] == split]
    if fold is not None:
        if "fold" not in rows.columns:
            raise EnsembleError(f"run {member.name} is not a k-fold run; the others are")
        rows = rows[rows["fold"] == fold]
    return rows.reset_index(drop=True)


def _outputs(rows: pd.DataFrame, task: Task, output_names: list[str]) -> np.ndarray:
    if task.name == "regression":
        return rows["prediction"].to_numpy(np.float64)
    return rows[output_names].to_numpy(np.float64)


def _truth(task: Task, rows: pd.DataFrame, output_names: list[str]) -> np.ndarray:
    if task.name == "regression":
        return rows["target"].to_numpy(np.float64)
    index = {name: k for k, name in enumerate(output_names)}
    if task.name == "multilabel":
        truth = np.zeros((len(rows), len(output_names)), np.int64)
        for i, labels in enumerate(rows["labels"]):
            for label in labels:
                if label in index:
                    truth[i, index[label]] = 1
        return truth
    return np.array([index[labels[0]] for labels in rows["labels"]], np.int64)


def dev_loss(task: Task, truth: np.ndarray, outputs: np.ndarray) -> float:
    """What fitted weights minimise: log-loss of probabilities, squared error of values."""
    if task.name == "regression":
        return float(np.mean((outputs - truth) ** 2))
    p = np.clip(outputs, 1e-7, 1 - 1e-7)
    if task.name == "multilabel":
        return float(-np.mean(truth * np.log(p) + (1 - truth) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(truth)), truth])))


def fit_weights(task: Task, truth: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to one of ``outputs`` (configurations first) minimising the dev loss."""
    from scipy.optimize import minimize

    n = len(outputs)
    if n == 1:
        return np.ones(1)
    start = np.full(n, 1.0 / n)
    result = minimize(lambda w: dev_loss(task, truth, np.tensordot(w, outputs, axes=1)), start, method="SLSQP",
                      bounds=[(0.0, 1.0)] * n, constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}])
    weights = np.clip(result.x if result.success else start, 0.0, None)
    return weights / weights.sum()


def build_ensemble(spec: EnsembleSpec, runs_dir: str | os.PathLike, out_dir: str | os.PathLike) -> RunRecord:
    """Combine the members of ``spec`` (run directories under ``runs_dir``) and write the ensemble's
    directory ``out_dir``; return its record."""
    start = time.perf_counter()
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    by_configuration = {c: [read_member(runs_dir, name) for name in names] for c, names in spec.candidates.items()
                        if spec.members == BEST_PER_FAMILY or c in spec.members}
    first = next(iter(by_configuration.values()))[0]
    task = member_task(first)
    output_names = first.output_names
    for members in by_configuration.values():
        for member in members:
            if member.record.task != first.record.task or member.output_names != output_names:
                raise EnsembleError(f"run {member.name}: its task or outputs differ from run {first.name}'s")
    metric = main_metric(task)
    configurations = choose_configurations(spec, by_configuration, metric)
    training = first.record.training
    units = _units(configurations, by_configuration, task, output_names)

    fitted = []
    for unit in units:
        dev = unit.outputs["dev"]
        weights = (fit_weights(task, unit.truth["dev"], dev) if spec.weights == "fitted"
                   else np.full(len(dev), 1.0 / len(dev)))
        combined = {split: np.tensordot(weights, unit.outputs[split], axes=1) for split in ("dev", "test")}
        decision = task.decide(unit.truth["dev"], combined["dev"], training.get("decision", "f1_micro"),
                               training.get("top1_rule", True))
        scores = {split: task.metrics(unit.truth[split], combined[split], decision) for split in ("dev", "test")}
        fitted.append((unit, weights, combined, decision, scores))
        log.info("ensemble %s%s: weights %s, dev %s %.4f, test %s %.4f", spec.name,
                 "" if unit.fold is None else f" fold {unit.fold}", np.round(weights, 3).tolist(), metric,
                 scores["dev"].get(metric) or float("nan"), metric, scores["test"].get(metric) or float("nan"))

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / PREDICTIONS) as tmp:
        _predictions(fitted, task, output_names).to_parquet(tmp, index=False)
    weights = np.mean([w for _, w, _, _, _ in fitted], axis=0)
    decision = combined_decision([d for _, _, _, d, _ in fitted])
    members = {c: by_configuration[c] for c in configurations}
    summary = {
        "kind": spec.kind, "weighting": spec.weights, "chosen_by": spec.members if spec.members == BEST_PER_FAMILY
        else "named", "main_metric": metric, "task": task.name, "label_names": output_names,
        "configurations": [{"configuration": c, "model": ms[0].record.model, "features": ms[0].record.features,
                            "runs": [m.name for m in ms],
                            "weight": float(w), "dev": mean_dev(ms, metric)}
                           for (c, ms), w in zip(members.items(), weights)],
        "members": [{"run": m.name, "weight": float(w) / len(ms)} for (c, ms), w in zip(members.items(), weights)
                    for m in ms],
        "decision": decision.to_dict(),
    }
    if units[0].fold is not None:
        summary["folds"] = [{"fold": int(u.fold), "weights": w.tolist(), "decision": d.to_dict()}
                            for u, w, _, d, _ in fitted]
    write_json(out_dir / ENSEMBLE_MEMBERS, plain(summary))
    record = _record(spec, out_dir.name, first, task, fitted, summary, time.perf_counter() - start)
    record.write(out_dir)
    return record


def _predictions(fitted: list, task: Task, output_names: list[str]) -> pd.DataFrame:
    frames = []
    for unit, _, combined, _, _ in fitted:
        for split in ("dev", "test"):
            rows = unit.rows[split]
            frame = pd.DataFrame({"id": unit.ids[split], "split": split})
            if unit.fold is not None:
                frame["fold"] = unit.fold
            if task.name == "regression":
                frame["prediction"] = combined[split]
                frame["target"] = rows["target"].to_numpy(np.float64)
            else:
                for j, name in enumerate(output_names):
                    frame[name] = combined[split][:, j]
                frame["labels"] = list(rows["labels"])
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _record(spec: EnsembleSpec, name: str, first: Member, task: Task, fitted: list, summary: dict,
            seconds: float) -> RunRecord:
    features = list(dict.fromkeys(f for c in summary["configurations"] for f in c["features"]))
    record = RunRecord(run=name, dataset=first.record.dataset, task=task.name, model=ENSEMBLE, features=features,
                       group=spec.group, selection=f"{spec.kind} ensemble: weights and decision on dev",
                       training=first.record.training, train_seconds=seconds, decision=summary["decision"],
                       provenance=provenance(), extras={"ensemble": {k: summary[k] for k in ("kind", "weighting", "chosen_by",
                                                                     "configurations")}})
    units = [(unit, decision, scores) for unit, _, _, decision, scores in fitted]
    if len(units) == 1:
        unit, decision, scores = units[0]
        record.dev, record.test = scores["dev"], scores["test"]
        record.threshold = getattr(decision, "threshold", None)
        record.n_items = {split: len(unit.ids[split]) for split in ("dev", "test")}
    else:
        record.dev, record.dev_std = aggregate([s["dev"] for _, _, s in units])
        record.test, record.test_std = aggregate([s["test"] for _, _, s in units])
        combined = [(u.truth["test"], out["test"], d) for u, _, out, d, _ in fitted]
        record.test_pooled = task.pooled_metrics(combined)
        record.cv = first.record.cv
        record.n_items = {"total": sum(len(u.ids["test"]) for u, _, _ in units),
                          "folds": [{split: len(u.ids[split]) for split in ("dev", "test")} for u, _, _ in units]}
        record.folds = [{"fold": int(u.fold), "dev": s["dev"], "test": s["test"],
                         "threshold": getattr(d, "threshold", None), "decision": d.to_dict()} for u, d, s in units]
    return RunRecord.from_dict(plain(record.to_dict()), name)

