"""Tuning, planned: an experiment group's ``tune`` section becomes one Optuna search per configuration and,
beside the group's own runs, tuned runs that train with the search's best settings.

A search trains the configuration's run of the group's first seed once per trial, with the trial's
settings over the configuration's own (``mmsets.runs.tune``), and writes ``tune/<search>.json``; the tuned
runs, ``<configuration>-tuned-s<seed>`` for every seed of the group, take its ``best_params`` as their
spec (``apply_params``), so the report shows the tuned configuration beside the untuned one. With
``pooling`` in a DMMS group's space, the pooling types are searched too: one search per feature
combination and variant, named without a pooling type, as are its tuned runs.

Like the rest of :mod:`mmsets.plan`, it needs nothing heavier than the standard library.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from mmsets.plan.errors import SpecError
from mmsets.plan.spec import DMMS, RUNTIME_TRAINING_KEYS, RunSpec, TrainConfig

TUNED = "tuned"  # the last part of a tuned configuration's name
POOLING = "pooling"
OBJECTIVES = ("dev", "kfold")
# Training keys a space may hold: not the job's own settings, not the data-parallel split, and not the metric
# that chooses the epoch, which is also what the search maximises.
TRAINING_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig)
                      if f.name not in (*RUNTIME_TRAINING_KEYS, "processes", "select"))


@dataclass
class TuneConfig:
    """``experiments.<group>.tune``: the space, the budgets, the objective and the sampler's seed."""

    space: dict[str, dict[str, Any]]  # setting -> {low, high, log, step} or {choices: [...]}
    trials: int = 30  # finished trials (complete or pruned), counted over every resumption
    timeout: float | None = None  # seconds of searching per job; None: until the trials are done
    objective: str = "dev"  # dev: the dev split's selection metric; kfold: its mean over folds of train + dev
    folds: int = 5  # objective kfold
    seed: int = 0  # the TPE sampler's
    pruner: dict[str, int] | None = field(default_factory=lambda: {"startup_trials": 5, "warmup_epochs": 1})

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise SpecError(f"tune.objective: {self.objective!r} is not one of {OBJECTIVES}")
        if self.trials < 1 or self.folds < 2:
            raise SpecError("tune: trials must be >= 1 and folds >= 2")
        for key, dimension in self.space.items():
            if not isinstance(dimension, Mapping) or not ("choices" in dimension or {"low", "high"} <= set(dimension)):
                raise SpecError(f"tune.space.{key}: give low and high, or choices")
            if "choices" not in dimension and dimension["low"] > dimension["high"]:
                raise SpecError(f"tune.space.{key}: low {dimension['low']} is above high {dimension['high']}")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "TuneConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SpecError(f"tune: {unknown} are not known; expected {sorted(known)}")
        return cls(**{k: v for k, v in raw.items()})


@dataclass
class SearchSpec:
    """One search: its name (``tune/<name>.json``), the run each trial trains with its settings over it, the
    tune section, the tuned runs that take its best settings and the untuned runs it searched over (the report
    shows them side by side)."""

    name: str
    run: RunSpec
    tune: TuneConfig
    tuned_runs: list[str] = field(default_factory=list)
    untuned_runs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "run": self.run.to_dict(), "tune": dataclasses.asdict(self.tune),
                "tuned_runs": list(self.tuned_runs), "untuned_runs": list(self.untuned_runs)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "SearchSpec":
        return cls(str(raw["name"]), RunSpec.from_dict(raw["run"]), TuneConfig.from_dict(raw["tune"]),
                   list(raw.get("tuned_runs") or []), list(raw.get("untuned_runs") or []))


def tunable(model_settings: list[str]) -> list[str]:
    """What a space may tune for a family with these settings: its settings, then the training keys."""
    return [*model_settings, *TRAINING_KEYS]


def check_space(space: Mapping[str, Any], model: str, model_settings: list[str], where: str) -> None:
    """Every key of a space is one of the family's settings or a training key; the error names the key."""
    keys = tunable(model_settings)
    for key in space:
        if key not in keys:
            raise SpecError(f"{where}.space.{key}: not a setting of {model} nor a training key; expected one of "
                            f"{keys}")


def apply_params(spec: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A run spec (``RunSpec.to_dict``'s form) with a search's settings over it: training keys in its
    ``training`` section, the family's settings at its top level."""
    out = {**spec, "training": dict(spec.get("training") or {})}
    for key, value in params.items():
        if key in TRAINING_KEYS:
            out["training"][key] = value
        else:
            out[key] = value
    return out


def expand_tuning(experiments: Mapping[str, Any], runs: Mapping[str, RunSpec]
                  ) -> tuple[dict[str, SearchSpec], dict[str, RunSpec]]:
    """The searches of the groups with a ``tune`` section among ``runs`` (expanded, untuned), by name, and their
    tuned runs, by name. A search trains its configuration with the group's first seed."""
    searches: dict[str, SearchSpec] = {}
    tuned: dict[str, RunSpec] = {}
    for run in runs.values():
        section = experiments.get(run.group, {}).get("tune")
        if not section:
            continue
        tune = TuneConfig.from_dict(section)
        base = _without_pooling(run) if run.model == DMMS and POOLING in tune.space else run
        name = base.configuration
        if name not in searches:  # runs come seed by seed in the group's order: this one has its first seed
            searches[name] = SearchSpec(name, base, tune)
        searches[name].untuned_runs.append(run.name)
        tuned_run = dataclasses.replace(base, variant=f"{run.variant}-{TUNED}" if run.variant else TUNED)
        if tuned_run.name not in tuned:
            tuned[tuned_run.name] = tuned_run
            searches[name].tuned_runs.append(tuned_run.name)
    clash = sorted(set(tuned) & set(runs))
    if clash:
        raise SpecError(f"tuned runs {clash} have the names of runs of the plan: rename the variant")
    return searches, tuned


def _without_pooling(run: RunSpec) -> RunSpec:
    return dataclasses.replace(run, settings={k: v for k, v in run.settings.items() if k != POOLING})
