"""The run spec: what one training run is, before any data is read.

A run is one model family over a combination of feature stores, with model settings, the training
recipe and optionally k-fold cross-validation. The workflow expands each experiment group of
``config.yaml`` into runs (``expand_runs``) when it builds the DAG and passes each run's spec to its
train job as JSON (``RunSpec.to_dict``); the train job reads it back with ``RunSpec.from_dict``.

Whether the model settings fit the family's
config dataclass is checked twice: against the schema when the DAG is built (``mmsets.plan.config``),
and by the dataclass itself in the train job (``mmsets.runs.run``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

from mmsets.plan.errors import SpecError
from mmsets.plan.vocab import CLASS_WEIGHTINGS, DECISION_RULES, SINGLE_LABEL_LOSSES

DMMS = "dmms"  # the family whose runs are also expanded over pooling types

# A dataclass field's annotation -> whether it takes an integer (True) or a finite number (False).
NUMBER_FIELDS = {"int": True, "int | None": True, "float": False, "float | None": False}


def number_problem(value: Any, integral: bool) -> str | None:
    """Why ``value`` is not an integer (``integral``) or not a finite number; None when it is one. The schema's
    integer and number types say the same (``mmsets.plan.schema``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"{value!r} is not {'an integer' if integral else 'a number'}"
    if not math.isfinite(value):
        return f"{value!r} is not a finite number"
    if integral and not isinstance(value, numbers.Integral):
        return f"{value!r} is not an integer" + (f" (write {int(value)})" if float(value).is_integer() else "")
    return None


def check_numbers(config: Any, name: str, error: type[Exception] = SpecError) -> None:
    """Raise ``error`` naming the first int field of the dataclass ``config`` that holds no integer, or float field
    that holds no finite number (None passes where the annotation allows it)."""
    for f in dataclasses.fields(config):
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        value = getattr(config, f.name)
        if annotation not in NUMBER_FIELDS or (value is None and annotation.endswith("None")):
            continue
        problem = number_problem(value, NUMBER_FIELDS[annotation])
        if problem:
            raise error(f"{name}.{f.name}: {problem}")


@dataclass
class TrainConfig:
    """The training recipe of both papers (DMMS Sec. 4.3); ``config.yaml``'s ``training`` section."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    warmup_epochs: int = 5
    weight_decay: float = 0.01
    class_weighting: str = "inv_sqrt"
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    patience: int | None = None  # stop after this many epochs without a better dev selection metric
    # multi-label: thresholds tuned on dev for f1_micro (one) or f1_macro (one per class), or paper (0.5)
    decision: str = "f1_micro"
    top1_rule: bool = True  # multi-label: try "every item gets at least its top-1 label"; kept only if it helps on dev
    # dev metric choosing the epoch; auto: f1_micro, accuracy or rmse by task (mmsets.tasks); binary and
    # multiclass: also the metric their decision is tuned for (accuracy, balanced_accuracy, f1_macro; else accuracy)
    select: str = "auto"
    single_label_loss: str = "sigmoid"  # binary/multiclass: sigmoid (both papers) or softmax cross-entropy
    auc_threshold: float | None = None  # regression: also report the AUC of predictions for target > this
    # data-parallel processes (torchrun + DDP, mmsets.runs.distributed): one per GPU; batch_size is their total
    processes: int = 1

    def __post_init__(self) -> None:
        check_numbers(self, "training")
        if self.lr <= 0:
            raise SpecError(f"training.lr: {self.lr} is not above 0")
        if self.weight_decay < 0:
            raise SpecError(f"training.weight_decay: {self.weight_decay} is below 0")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise SpecError(f"training.class_weighting: {self.class_weighting!r} is not one of {CLASS_WEIGHTINGS}")
        if self.decision not in DECISION_RULES:
            raise SpecError(f"training.decision: {self.decision!r} is not one of {DECISION_RULES}")
        if self.single_label_loss not in SINGLE_LABEL_LOSSES:
            raise SpecError(f"training.single_label_loss: {self.single_label_loss!r} is not one of "
                            f"{SINGLE_LABEL_LOSSES}")
        if self.epochs < 1 or self.batch_size < 1 or self.warmup_epochs < 0:
            raise SpecError("training: epochs and batch_size must be >= 1, warmup_epochs >= 0")
        if self.patience is not None and self.patience < 1:
            raise SpecError(f"training.patience: {self.patience} must be >= 1 (or null: no early stop)")
        if self.processes < 1 or self.processes > self.batch_size:
            raise SpecError(f"training.processes: {self.processes} must be between 1 and batch_size "
                            f"({self.batch_size}), which is their total")


# Settings of the job, not of the recipe: they come from the runtime (device, workers) and the seed list.
RUNTIME_TRAINING_KEYS = ("seed", "device", "num_workers")


@dataclass
class CVConfig:
    """k-fold cross-validation instead of the manifest's train/dev/test split (``mmsets.cv``)."""

    folds: int = 5
    seed: int = 0  # the folds' shuffle; independent of the training seed, so seeds share their folds
    dev_fraction: float = 0.1  # of the training folds, held out for model selection

    def __post_init__(self) -> None:
        check_numbers(self, "cv")
        if int(self.folds) != self.folds or self.folds < 2:
            raise SpecError(f"cv.folds must be an integer >= 2, got {self.folds!r}")
        if not 0.0 < self.dev_fraction < 1.0:
            raise SpecError(f"cv.dev_fraction must lie in (0, 1), got {self.dev_fraction!r}")
        self.folds = int(self.folds)


# The spec's own keys; every other key is a setting of the model family.
RUN_KEYS = ("model", "features", "training", "cv", "group", "combination", "variant")


@dataclass
class RunSpec:
    model: str
    features: list[str]
    settings: dict[str, Any] = field(default_factory=dict)  # the family's config fields the data does not give
    training: TrainConfig = field(default_factory=TrainConfig)
    cv: CVConfig | None = None
    group: str | None = None  # where the run comes from in config.yaml: its experiment group,
    combination: str | None = None  # feature combination
    variant: str | None = None  # and variant (None: the group has none)

    @property
    def pooling(self) -> str | None:
        return self.settings.get("pooling")

    @property
    def seed(self) -> int:
        return self.training.seed

    @property
    def configuration(self) -> str:
        """The run's name without its seed: what the runs that differ only in their seed share."""
        return "-".join(p for p in (self.group, self.combination, self.pooling if self.model == DMMS else None,
                                    self.variant) if p)

    @property
    def name(self) -> str:
        """``<group>-<combination>[-<pooling>][-<variant>]-s<seed>``, the run's folder name."""
        return f"{self.configuration}-s{self.seed}"

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], available: list[str] | None = None) -> "RunSpec":
        """Read a spec (``to_dict``'s form), checking its own keys; ``available``: the feature stores there are."""
        if not isinstance(spec, Mapping):
            raise SpecError(f"a run spec must be a mapping, got {spec!r}")
        features = list(spec.get("features", available or []))
        if not features:
            raise SpecError("spec key 'features': at least one feature is needed")
        for feature in features:
            if available is not None and feature not in available:
                raise SpecError(f"spec key 'features': {feature!r} has no feature store (have {available})")
        training = TrainConfig(**_known(spec.get("training") or {}, TrainConfig, "training"))
        cv = CVConfig(**_known(spec["cv"], CVConfig, "cv")) if spec.get("cv") is not None else None
        return cls(model=str(spec.get("model", DMMS)), features=features,
                   settings={k: v for k, v in spec.items() if k not in RUN_KEYS}, training=training, cv=cv,
                   group=spec.get("group"), combination=spec.get("combination"), variant=spec.get("variant"))

    def to_dict(self) -> dict[str, Any]:
        training = {k: v for k, v in asdict(self.training).items() if k not in ("device", "num_workers")}
        if training["processes"] == 1:  # the default stays out: specs (rule params) from before it are unchanged
            del training["processes"]
        out = {"model": self.model, "features": list(self.features), **self.settings, "training": training}
        out.update({k: v for k, v in (("group", self.group), ("combination", self.combination),
                                      ("variant", self.variant)) if v is not None})
        if self.cv is not None:
            out["cv"] = asdict(self.cv)
        return out


def _known(section: Any, cls: type, prefix: str) -> dict[str, Any]:
    if not isinstance(section, Mapping):
        raise SpecError(f"spec key {prefix!r} must be a mapping, got {section!r}")
    keys = [f.name for f in dataclasses.fields(cls)]
    for key in section:
        if key not in keys:
            raise SpecError(f"spec key '{prefix}.{key}' is not known; expected {keys}")
    return dict(section)


def expand_runs(experiments: Mapping[str, Any], groups: list[str], training: Callable[[str], Mapping[str, Any]],
                models: Mapping[str, Any], cv: Mapping[str, Any] | None = None) -> dict[str, RunSpec]:
    """The runs of experiment ``groups`` (validated sections of config.yaml; ``models`` with a dataset's
    overrides merged in; ``training(family)`` that family's recipe), by name: each group's feature
    combinations x pooling types (DMMS only) x variants x seeds. ``mmsets.plan.config.dataset_runs`` calls it
    for one dataset."""
    runs: dict[str, RunSpec] = {}
    for group in groups:
        if group not in experiments:
            raise SpecError(f"experiments: no experiment group {group!r}")
        exp = experiments[group]
        variants = exp.get("variants") or {None: {}}
        for combination, features in exp["features"].items():
            for variant, overrides in variants.items():
                model = overrides.get("model", exp["model"])
                settings = {**models.get(model, {}), **{k: v for k, v in overrides.items() if k != "model"}}
                for pooling in exp["pooling"] if model == DMMS else [None]:
                    for seed in exp["seeds"]:
                        run = RunSpec(model, list(features), {**({"pooling": pooling} if pooling else {}), **settings},
                                      TrainConfig(**{**training(model), "seed": seed}), CVConfig(**cv) if cv else None,
                                      group, combination, variant)
                        runs[run.name] = run
    return runs
