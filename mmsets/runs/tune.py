"""Tuning with Optuna: one search (``mmsets.plan.tuning.SearchSpec``) over a configuration's settings.

Each trial trains the search's run with settings drawn from its space over the run's own, by a TPE
sampler seeded with ``tune.seed``, and is scored on dev by the selection metric that chooses the run's
epoch (``objective: dev``), or by its mean over ``folds`` folds of the train and dev items (``kfold``,
for small data: each fold in turn is the dev split). The test split is never read. A median pruner
stops a trial whose dev metric at an epoch is below the median of the earlier trials at that epoch
(the first fold's epochs under kfold; fitted families have no epochs and are never pruned).

The study lives in an SQLite file beside the search's JSON, so a search that is interrupted resumes:
its finished trials (complete or pruned) count toward ``trials``, a trial left running is marked
failed, and the sampler is seeded with ``tune.seed`` plus the number of trials already stored, so a
resumed search does not draw its random start-up trials again. A search whose space, run or objective
changed starts a study of its own (``study_name``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import optuna
from optuna.trial import TrialState

from mmsets.cv import assign_folds
from mmsets.data.manifest import Manifest, read_manifest
from mmsets.io import write_json
from mmsets.plan.families import FITTED, family
from mmsets.plan.spec import RunSpec
from mmsets.plan.tuning import SearchSpec, TuneConfig, apply_params
from mmsets.runs.run import fit_part, parse_spec
from mmsets.runs.scoring import open_stores
from mmsets.tasks import LOWER_IS_BETTER, make_task

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # the trial states that count toward the budget


def storage_url(path: str | os.PathLike) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def search(manifest_path: str | os.PathLike, feature_paths: Mapping[str, str | os.PathLike],
           out_path: str | os.PathLike, storage_path: str | os.PathLike,
           spec: SearchSpec | Mapping[str, Any]) -> dict:
    """Run (or resume) one search until ``tune.trials`` trials are finished or ``tune.timeout`` seconds
    have passed; write its JSON (docs/formats.md) to ``out_path`` and return it."""
    search_spec = spec if isinstance(spec, SearchSpec) else SearchSpec.from_dict(spec)
    tune = search_spec.tune
    run = parse_spec(search_spec.run, list(feature_paths))
    manifest = read_manifest(manifest_path)
    metric = objective_metric(run, manifest)
    study = open_study(study_name(search_spec), storage_path, tune, metric in LOWER_IS_BETTER)
    start = time.monotonic()
    with open_stores({name: feature_paths[name] for name in run.features}) as stores:
        objective = _objective(run, manifest, stores, tune, metric)
        while (left := tune.trials - len(finished(study))) > 0:
            timeout = None if tune.timeout is None else tune.timeout - (time.monotonic() - start)
            if timeout is not None and timeout <= 0:
                log.info("time budget of %s s spent with %d of %d trials finished", tune.timeout,
                         tune.trials - left, tune.trials)
                break
            count = len(finished(study))
            study.optimize(objective, n_trials=left, timeout=timeout, catch=(FloatingPointError, ValueError))
            if len(finished(study)) == count:
                break  # every trial of the round failed (see the log): more of the same would not end
    result = study_record(study, search_spec, metric)
    write_json(Path(out_path), result)
    return result


def study_name(search_spec: SearchSpec) -> str:
    """The search's name and a digest of what its trials depend on (the run, the space, the objective, the
    sampler's seed and the pruner) but not of its budgets: a changed space starts a new study in the same file,
    a larger budget resumes the old one."""
    tune = dataclasses.asdict(search_spec.tune)
    depends = {"run": search_spec.run.to_dict(), **{k: v for k, v in tune.items() if k not in ("trials", "timeout")}}
    return f"{search_spec.name}-{hashlib.sha256(json.dumps(depends, sort_keys=True).encode()).hexdigest()[:12]}"


def open_study(name: str, storage_path: str | os.PathLike, tune: TuneConfig, minimise: bool):
    """The search's study, created or loaded from its SQLite file; trials an interrupted job left running
    are marked failed (they never count toward the budget)."""
    Path(storage_path).parent.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(storage_url(storage_path))
    stored = 0
    if name in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        previous = optuna.load_study(study_name=name, storage=storage)
        for trial in previous.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # Optuna has no public trial id
        stored = len(previous.trials)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=tune.pruner["startup_trials"],
                                          n_warmup_steps=tune.pruner["warmup_epochs"])
              if tune.pruner is not None else optuna.pruners.NopPruner())
    return optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                               direction="minimize" if minimise else "maximize",
                               sampler=optuna.samplers.TPESampler(seed=tune.seed + stored), pruner=pruner)


def finished(study) -> list:
    return study.get_trials(deepcopy=False, states=FINISHED)


def objective_metric(run: RunSpec, manifest: Manifest) -> str:
    """The dev metric the search optimises: the one that chooses the run's epoch (fitted families report no
    dev loss, so theirs is the task's default)."""
    cfg = run.training
    task = make_task(manifest.task, manifest.label_names, cfg.single_label_loss, cfg.auc_threshold, cfg.select)
    metric = task.check_select(cfg.select)
    return task.default_select if metric == "loss" and family(run.model).resources == FITTED else metric


def suggest(trial, space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A trial's settings: integers when both bounds are, choices that are not plain values (a list of
    head widths) drawn by their JSON text and read back."""
    params = {}
    for key, dim in space.items():
        if "choices" in dim:
            plain = all(c is None or isinstance(c, (bool, int, float, str)) for c in dim["choices"])
            choices = dim["choices"] if plain else [json.dumps(c) for c in dim["choices"]]
            value = trial.suggest_categorical(key, choices)
            params[key] = value if plain else json.loads(value)
        elif isinstance(dim["low"], int) and isinstance(dim["high"], int) and not isinstance(dim.get("step"), float):
            params[key] = trial.suggest_int(key, dim["low"], dim["high"], step=int(dim.get("step") or 1),
                                            log=bool(dim.get("log")))
        else:
            params[key] = trial.suggest_float(key, dim["low"], dim["high"], step=dim.get("step"),
                                              log=bool(dim.get("log")))
    return params


def _objective(run: RunSpec, manifest: Manifest, stores, tune: TuneConfig, metric: str) -> Callable:
    manifests = [manifest] if tune.objective == "dev" else tuning_folds(manifest, tune.folds, tune.seed)

    def objective(trial) -> float:
        params = suggest(trial, tune.space)
        trial_run = parse_spec(apply_params(run.to_dict(), params), list(run.features))
        log.info("trial %d: %s", trial.number, params)

        def report(entry: dict) -> None:
            trial.report(float(entry[f"dev_{metric}"]), entry["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"dev {metric} {entry[f'dev_{metric}']:.4f} at epoch {entry['epoch']}")

        values = []
        for k, part in enumerate(manifests):
            _, _, result, _ = fit_part(trial_run, part, stores, ("train", "dev"), report if k == 0 else None)
            values.append(result.dev.get(metric))
        if any(v is None or not math.isfinite(v) for v in values):
            raise ValueError(f"dev {metric} is {values}")
        return float(np.mean(values))

    return objective


def tuning_folds(manifest: Manifest, folds: int, seed: int) -> list[Manifest]:
    """The train and dev items in ``folds`` folds, each fold in turn the dev split and the others train; the
    test items are left out."""
    frame = manifest.frame[manifest.frame["split"].isin(["train", "dev"])].reset_index(drop=True)
    pool = dataclasses.replace(manifest, frame=frame)
    fold_of = assign_folds(pool, folds, seed)
    out = []
    for k in range(folds):
        part = frame.copy()
        part["split"] = np.where(fold_of == k, "dev", "train")
        out.append(dataclasses.replace(manifest, frame=part))
    return out


def study_record(study, search_spec: SearchSpec, metric: str) -> dict:
    """The search's JSON: every trial, the best settings and the configuration they were searched over."""
    trials = []
    for t in study.trials:
        intermediate = t.intermediate_values
        trials.append({
            "number": t.number, "state": t.state.name.lower(), "value": t.value,
            "params": _decoded(t.params, search_spec.tune.space),
            "duration": t.duration.total_seconds() if t.duration is not None else None,
            "epochs": [intermediate[step] for step in sorted(intermediate)],
        })
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        raise RuntimeError(f"search {search_spec.name}: no trial completed ({len(study.trials)} tried); "
                           f"see the log for why")
    best = study.best_trial
    return {
        "search": search_spec.name, "model": search_spec.run.model, "metric": metric,
        "direction": study.direction.name.lower(), "objective": search_spec.tune.objective,
        "folds": search_spec.tune.folds if search_spec.tune.objective == "kfold" else None,
        "budget": {"trials": search_spec.tune.trials, "timeout": search_spec.tune.timeout},
        "n_trials": len(finished(study)), "best_trial": best.number, "best_value": best.value,
        "best_params": _decoded(best.params, search_spec.tune.space), "space": search_spec.tune.space,
        "base": search_spec.run.to_dict(), "tuned_runs": search_spec.tuned_runs,
        "untuned_runs": search_spec.untuned_runs, "trials": trials,
    }


def _decoded(params: Mapping[str, Any], space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        choices = space.get(key, {}).get("choices")
        out[key] = json.loads(value) if choices and isinstance(value, str) and value not in choices else value
    return out


def tuned_params(path: str | os.PathLike) -> dict[str, Any]:
    """A search JSON's best settings."""
    return json.loads(Path(path).read_text())["best_params"]
