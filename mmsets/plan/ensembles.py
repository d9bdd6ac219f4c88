"""Ensembles, as the DAG plans them: which trained runs each one may combine, before any data is read.

Two kinds, each a run directory of its own (``mmsets.runs.ensemble`` makes it from its members'
``predictions.parquet``; nothing is trained):

- ``seeds``: every configuration with several seeds gets ``<configuration>-seeds``, its runs' probabilities
  averaged with equal weights (an experiment group opts out with ``seed_ensemble: false``).
- ``families``: an experiment group with ``model: ensemble`` combines configurations of the groups named in
  its ``from`` (default: every other group the dataset runs), each configuration the mean of its seeds:
  ``members: best_per_family`` takes the best configuration of each model family by the dev main metric
  (chosen in the job, from the runs' metrics), or ``members`` names the configurations. ``weights: fitted``
  fits non-negative weights summing to one on dev, ``equal`` gives each configuration the same.

Either way the decision (thresholds, top-1 rule) is tuned on the combined dev outputs: test never chooses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from mmsets.plan.errors import SpecError
from mmsets.plan.spec import RunSpec

ENSEMBLE = "ensemble"  # the experiment groups' ``model`` of a family ensemble, and every ensemble's record
SEEDS, FAMILIES = "seeds", "families"
BEST_PER_FAMILY = "best_per_family"
WEIGHTINGS = ("fitted", "equal")
SEED_SUFFIX = "-seeds"  # never a run's "-s<seed>"


@dataclass
class EnsembleSpec:
    """One ensemble: its name (its run directory), kind, the runs it may combine by configuration, what it
    chooses among them and how it weighs them."""

    name: str
    kind: str
    candidates: dict[str, list[str]]  # configuration -> its runs (one per seed)
    members: str | list[str] = BEST_PER_FAMILY  # families: best_per_family or configuration names
    weights: str = "equal"
    group: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in (SEEDS, FAMILIES):
            raise SpecError(f"ensemble {self.name}: kind {self.kind!r} is not one of {[SEEDS, FAMILIES]}")
        if self.weights not in WEIGHTINGS:
            raise SpecError(f"ensemble {self.name}: weights {self.weights!r} is not one of {list(WEIGHTINGS)}")
        if not self.candidates:
            raise SpecError(f"ensemble {self.name}: no runs to combine")
        if isinstance(self.members, list):
            unknown = [c for c in self.members if c not in self.candidates]
            if unknown:
                raise SpecError(f"ensemble {self.name}: members {unknown} are not configurations it draws from "
                                f"({sorted(self.candidates)})")
        elif self.members != BEST_PER_FAMILY:
            raise SpecError(f"ensemble {self.name}: members {self.members!r} is neither {BEST_PER_FAMILY!r} "
                            f"nor a list of configurations")

    @property
    def runs(self) -> list[str]:
        """Every run the job reads (a family ensemble reads them all to choose on dev)."""
        names = self.candidates if self.members == BEST_PER_FAMILY else self.members
        return [run for configuration in names for run in self.candidates[configuration]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "EnsembleSpec":
        if not isinstance(raw, Mapping):
            raise SpecError(f"an ensemble spec must be a mapping, got {raw!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SpecError(f"ensemble spec keys {unknown} are not known; expected {sorted(known)}")
        return cls(**{k: (dict(v) if k == "candidates" else v) for k, v in raw.items()})


def expand_ensembles(experiments: Mapping[str, Any], groups: list[str], runs: Mapping[str, RunSpec]
                     ) -> dict[str, EnsembleSpec]:
    """The ensembles of experiment ``groups`` (validated sections of config.yaml) over a dataset's ``runs``,
    by name: a seed ensemble per configuration with several seeds, then the groups with ``model: ensemble``."""
    by_group: dict[str, dict[str, list[str]]] = {}  # group -> configuration -> its runs, in plan order
    for run in runs.values():
        by_group.setdefault(run.group, {}).setdefault(run.configuration, []).append(run.name)
    out: dict[str, EnsembleSpec] = {}
    for group, configurations in by_group.items():
        if not experiments[group].get("seed_ensemble", True):
            continue
        for configuration, names in configurations.items():
            if len(names) > 1:
                name = configuration + SEED_SUFFIX
                out[name] = EnsembleSpec(name, SEEDS, {configuration: names}, [configuration], "equal", group)
    for group in groups:
        exp = experiments[group]
        if exp.get("model") != ENSEMBLE:
            continue
        sources = exp.get("from") or [g for g in groups if experiments[g].get("model") != ENSEMBLE]
        missing = [g for g in sources if g not in by_group]
        if missing:
            raise SpecError(f"experiments.{group}.from: {missing} are not run groups of the dataset "
                            f"(its groups with runs: {sorted(by_group)})")
        candidates = {c: names for g in sources for c, names in by_group[g].items()}
        members = exp.get("members", BEST_PER_FAMILY)
        try:
            out[group] = EnsembleSpec(group, FAMILIES, candidates, list(members) if isinstance(members, list)
                                      else members, exp.get("weights", "fitted"), group)
        except SpecError as err:
            raise SpecError(f"experiments.{group}: {err}") from None
    return out
