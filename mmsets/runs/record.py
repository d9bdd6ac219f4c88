"""What a run leaves to be read: ``metrics.json`` (``RunRecord``) and ``feature_importance.json``
(``ImportanceRecord``), written by the train job and read by the report. Their keys are listed in
docs/formats.md.

Reading is lenient: these files may come from an older mmsets, an interrupted job or another tool, so
a value of the wrong type reads as absent (None, {} or []) and the report shows what is missing.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmsets.io import read_json, write_json
from mmsets.plan.layout import IMPORTANCE, METRICS


class RecordError(ValueError):
    """A run file that cannot be read at all (missing, not JSON, not an object)."""


def number(value: Any) -> float | None:
    """``value`` as a finite float, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def scores(raw: Any) -> dict:
    """A metrics dict with numbers only: scalars, and one level of {class: number} (per-class accuracy)."""
    out: dict[str, Any] = {}
    for key, value in (raw.items() if isinstance(raw, dict) else ()):
        if isinstance(value, dict):
            out[str(key)] = {str(k): number(v) for k, v in value.items()}
        elif value is None or number(value) is not None:
            out[str(key)] = number(value)
    return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _read_object(path: Path) -> dict:
    try:
        raw = read_json(path)
    except FileNotFoundError:
        raise RecordError(f"{path.name} missing") from None
    except (OSError, ValueError) as err:
        raise RecordError(f"{path.name} unreadable: {err}") from None
    if not isinstance(raw, dict):
        raise RecordError(f"{path.name} unreadable: not a JSON object")
    return raw


@dataclass
class RunRecord:
    """One run's ``metrics.json``: who the run is, how it was trained, and its scores.

    For a k-fold run ``dev`` and ``test`` are the means over folds, ``dev_std``/``test_std`` their
    standard deviations, ``test_pooled`` the metrics of all out-of-fold predictions together and
    ``folds`` each fold's own entries.
    """

    run: str
    dataset: str | None = None
    task: str | None = None
    model: str | None = None
    features: list[str] = field(default_factory=list)
    pooling: str | None = None
    seed: int | None = None
    group: str | None = None  # the experiment group, feature combination and variant of config.yaml
    combination: str | None = None
    variant: str | None = None
    selection: str | None = None  # the dev metric that chose the epoch (or the fitted model's settings)
    n_params: int | None = None
    model_config: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    epochs: int | None = None
    best_epoch: float | None = None
    threshold: Any = None  # multi-label and binary: the threshold chosen on dev (a list: one per class)
    decision: dict | None = None  # the decision chosen on dev (mmsets.metrics.decision_from_dict reads it)
    train_seconds: float | None = None
    n_items: dict = field(default_factory=dict)
    dev: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)
    history: list = field(default_factory=list)  # one entry per epoch
    top1_rule: dict | None = None  # multi-label: whether the top-1 rule was tried and kept
    extras: dict = field(default_factory=dict)  # what a fitted model chose (boosting_rounds, chosen_C), top level in the file
    cv: dict | None = None
    dev_std: dict | None = None
    test_std: dict | None = None
    test_pooled: dict | None = None
    folds: list | None = None
    provenance: dict | None = None  # code, packages and machine (mmsets.runs.provenance)
    stores: dict | None = None  # how each store the run read was made: extractor and settings (the recipe)

    @property
    def configuration(self) -> str:
        """The runs that differ only in their seed share it: ``<group>-<combination>[-<pooling>][-<variant>]``,
        or the run's name for a record that does not say where it comes from."""
        if not (self.group and self.combination):
            return self.run
        pooling = self.pooling if self.model == "dmms" else None
        return "-".join(p for p in (self.group, self.combination, pooling, self.variant) if p)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extras"}
        for key in ("decision", "top1_rule", "cv", "dev_std", "test_std", "test_pooled", "folds", "group",
                    "combination", "variant", "provenance", "stores"):
            if out[key] is None:
                del out[key]
        return {**out, **self.extras}

    def write(self, run_dir: str | os.PathLike) -> None:
        write_json(Path(run_dir) / METRICS, self.to_dict())

    @classmethod
    def from_dict(cls, raw: dict, run: str) -> "RunRecord":
        """Leniently: a value of the wrong type reads as absent; ``run`` names a record without one."""
        known = {f.name for f in dataclasses.fields(cls)}
        seed = number(raw.get("seed"))
        record = cls(
            run=_text(raw.get("run")) or run,
            **{k: _text(raw.get(k)) for k in ("dataset", "task", "model", "pooling", "group", "combination",
                                              "variant", "selection")},
            features=[str(f) for f in raw.get("features", [])] if isinstance(raw.get("features"), list) else [],
            seed=int(seed) if seed is not None else None,
            **{k: raw[k] if isinstance(raw.get(k), dict) else {} for k in ("model_config", "training", "n_items")},
            **{k: number(raw.get(k)) for k in ("n_params", "epochs", "best_epoch", "train_seconds")},
            threshold=raw.get("threshold") if number(raw.get("threshold")) is not None
            or isinstance(raw.get("threshold"), list) else None,
            dev=scores(raw.get("dev")), test=scores(raw.get("test")),
            history=[h for h in raw.get("history", []) if isinstance(h, dict)] if isinstance(raw.get("history"), list) else [],
            decision=raw["decision"] if isinstance(raw.get("decision"), dict) else None,
            top1_rule=raw["top1_rule"] if isinstance(raw.get("top1_rule"), dict) else None,
            cv=raw["cv"] if isinstance(raw.get("cv"), dict) else None,
            **{k: scores(raw[k]) if isinstance(raw.get(k), dict) else None for k in ("dev_std", "test_std", "test_pooled")},
            folds=[f for f in raw["folds"] if isinstance(f, dict)] if isinstance(raw.get("folds"), list) else None,
            **{k: raw[k] if isinstance(raw.get(k), dict) else None for k in ("provenance", "stores")},
            extras={k: v for k, v in raw.items() if k not in known},
        )
        return record

    @classmethod
    def read(cls, run_dir: str | os.PathLike) -> "RunRecord":
        run_dir = Path(run_dir)
        return cls.from_dict(_read_object(run_dir / METRICS), run_dir.name)


@dataclass
class ImportanceRecord:
    """One run's ``feature_importance.json``: the mean share of each modality (None: the model has none),
    and per item (``ids``, ``shares``) when the family explains each item (mmsets.models.importance)."""

    modalities: list[str]
    pooling: str | None = None
    kind: str | None = None
    mean_share: dict[str, float | None] | None = None
    n_items: int | None = None  # the items with at least one element, over which the mean is taken
    ids: list[str] | None = None
    shares: list[list[float]] | None = None
    token_weights: dict[str, list[float]] | None = None  # DM2S2 IntraMRA, a few items: {id: per-token weights}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"modalities": self.modalities, "pooling": self.pooling, "mean_share": self.mean_share}
        if self.kind is not None:
            out["kind"] = self.kind
        if self.n_items is not None:
            out["n_items"] = self.n_items
        if self.ids is not None:
            out["per_item"] = {"ids": self.ids, "shares": self.shares}
        if self.token_weights is not None:
            out["intra_attention"] = self.token_weights
        return out

    def write(self, run_dir: str | os.PathLike) -> None:
        write_json(Path(run_dir) / IMPORTANCE, self.to_dict())

    @classmethod
    def read(cls, run_dir: str | os.PathLike) -> "ImportanceRecord":
        raw = _read_object(Path(run_dir) / IMPORTANCE)
        try:
            modalities = [str(m) for m in raw["modalities"]]
            mean_share = raw.get("mean_share")
            if mean_share is not None:
                mean_share = {str(k): number(v) for k, v in mean_share.items()}
            per_item = raw.get("per_item") or {}
            ids = [str(i) for i in per_item.get("ids", [])]
            shares = list(per_item.get("shares", []))
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise RecordError(f"{IMPORTANCE} unreadable: {err!r}") from None
        kind = _text(raw.get("kind"))
        intra = raw.get("intra_attention")
        token_weights = {str(k): [number(w) or 0.0 for w in v] for k, v in intra.items() if isinstance(v, list)} \
            if isinstance(intra, dict) else None
        return cls(modalities, _text(raw.get("pooling")), kind, mean_share, number(raw.get("n_items")),
                   ids if len(ids) == len(shares) else None, shares if len(ids) == len(shares) else None,
                   token_weights)
