"""Fitted baselines on pooled features, with the same splits, decision rules and metrics as the set models.

- ``lightgbm``: gradient-boosted trees on the concatenated mean-pooled features and element counts,
  DM2S2's production baseline (Sec. V-A, Table 4); one booster per label for multi-label tasks.
- ``logreg``: logistic regression on the same features (ridge regression for a regression task), the
  reference "frozen encoders concatenated + logistic regression" baseline.

A missing modality (no element in the item) fills its pooled features with zeros and, with ``counts``, has
an element count of 0: the count is what tells it from a modality whose elements pool to zeros. Zeros, not
NaN, so LightGBM's own handling of missing values never applies.

They are ``FittedModel``s, fitted once on the training split (``mmsets.runs.learner``) rather than
trained by gradient steps. Their state holds only strings (LightGBM's own text model format) and tensors, so checkpoints
load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from mmsets.models.parts import INDEX, builder, check_inputs


# ---------------------------------------------------------------------------- pooled features


def pooled_feature_names(input_dims: dict[str, int], counts: bool = True) -> list[str]:
    """Names of the pooled features: ``<modality>[j]``, then ``<modality>#count``."""
    names = [f"{name}[{j}]" for name, dim in input_dims.items() for j in range(dim)]
    return names + ([f"{name}#count" for name in input_dims] if counts else [])


def pooled_features(ds: Any, pooling: str = "mean", counts: bool = True) -> tuple[np.ndarray, list[str]]:
    """(N, F) fixed-size features of a ``SetDataset``: each modality's elements pooled (zeros when it has
    none), then, with ``counts``, the number of elements of each modality. Also the feature names."""
    reduce = {"mean": np.mean, "max": np.max, "min": np.min, "sum": np.sum}[pooling]
    kinds = getattr(ds, "input_kinds", {})
    X = np.zeros((len(ds), sum(ds.input_dims[m] for m in ds.modalities) + (len(ds.modalities) if counts else 0)),
                 np.float32)
    offset = 0
    for name in ds.modalities:
        dim = ds.input_dims[name]
        eye = np.eye(dim, dtype=np.float32) if kinds.get(name) == INDEX else None
        for i, a in enumerate(ds.elements[name]):
            if len(a):  # an index modality's ids count as one-hot rows: its mean is the histogram of its ids
                X[i, offset:offset + dim] = reduce(eye[a] if eye is not None else a.astype(np.float32), axis=0)
        offset += dim
    if counts:
        for k, name in enumerate(ds.modalities):
            X[:, offset + k] = ds.counts(name)
    return X, pooled_feature_names({m: ds.input_dims[m] for m in ds.modalities}, counts)


def modality_of_feature(name: str) -> str:
    return re.sub(r"(\[\d+\]|#count)$", "", name)


class FittedModel:
    """A model fitted on pooled features instead of trained by gradient steps; not an ``nn.Module``.

    ``fit(X, Y, X_dev, Y_dev, kind, seed, sample_weight, score)`` takes the task's training targets
    (multi-hot, one-hot or standardised values, as ``ds.labels``), the task name in ``kind`` and
    ``score(dev predictions) -> float`` (larger is better: the task's dev selection metric) for
    choosing settings on dev; ``predict(X)`` gives probabilities (N, C) or standardised values (N,).
    """

    config: Any

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def features(self, ds: Any) -> np.ndarray:
        return pooled_features(ds, self.config.pooling, self.config.counts)[0]

    def feature_names(self, ds: Any) -> list[str]:
        return pooled_feature_names({m: ds.input_dims[m] for m in ds.modalities}, self.config.counts)

    def explain(self, ds: Any) -> np.ndarray:
        """Per-modality shares (see mmsets.models.importance); NotImplementedError for a model without any."""
        raise NotImplementedError(f"{type(self).__name__} has no explain()")

    def extras(self) -> dict[str, Any]:
        """What the fit chose, for metrics.json (boosting rounds, the L2 strength, ...)."""
        return {}

    @property
    def n_params(self) -> int:
        raise NotImplementedError

    def to(self, device: Any) -> "FittedModel":
        return self

    def eval(self) -> "FittedModel":
        return self


# ---------------------------------------------------------------------------------- LightGBM


@dataclass
class LightGBMConfig:
    input_dims: dict[str, int]
    n_classes: int
    pooling: str = "mean"
    counts: bool = True  # add each modality's element count as a feature
    n_estimators: int = 500  # boosting rounds at most; early stopping on dev picks the number
    early_stopping_rounds: int = 50
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 20
    colsample_bytree: float = 0.8
    subsample: float = 1.0
    reg_lambda: float = 0.0
    n_jobs: int = 0  # 0: LightGBM's default (OpenMP's thread count)
    input_kinds: dict[str, str] | None = None

    def __post_init__(self) -> None:
        check_inputs(self, "LightGBMConfig")


class LightGBMModel(FittedModel):
    """Gradient-boosted trees; one binary booster per label (multi-label), one multiclass or binary booster
    (single-label), one L2 booster (regression). Boosters are kept as LightGBM model strings."""

    explain_kind = "gain"
    selection = "boosting rounds by dev loss (early stopping)"

    def __init__(self, config: LightGBMConfig):
        self.config = config
        self.kind = ""
        self.models: list[str] = []
        self.best_iterations: list[int] = []
        self._boosters: list[Any] = []

    def _params(self, objective: str, seed: int, **extra: Any) -> dict[str, Any]:
        c = self.config
        params = {
            "objective": objective, "learning_rate": c.learning_rate, "num_leaves": c.num_leaves,
            "min_data_in_leaf": c.min_child_samples, "feature_fraction": c.colsample_bytree,
            "bagging_fraction": c.subsample, "bagging_freq": 1 if c.subsample < 1.0 else 0,
            "lambda_l2": c.reg_lambda, "seed": seed, "deterministic": True, "force_col_wise": True,
            "verbosity": -1, **extra,
        }
        if c.n_jobs:
            params["num_threads"] = c.n_jobs
        return params

    def _train(self, params: dict, X: np.ndarray, y: np.ndarray, X_dev: np.ndarray, y_dev: np.ndarray,
               weight: np.ndarray | None) -> None:
        import lightgbm as lgb

        train = lgb.Dataset(np.ascontiguousarray(X), label=np.ascontiguousarray(y), weight=weight,
                            params={"verbosity": -1})
        dev = lgb.Dataset(np.ascontiguousarray(X_dev), label=np.ascontiguousarray(y_dev), reference=train)
        booster = lgb.train(params, train, num_boost_round=self.config.n_estimators, valid_sets=[dev],
                            callbacks=[lgb.early_stopping(self.config.early_stopping_rounds, verbose=False)])
        best = booster.best_iteration or booster.current_iteration()
        self.models.append(booster.model_to_string(num_iteration=best))
        self.best_iterations.append(int(best))

    def fit(self, X, Y, X_dev, Y_dev, kind: str, seed: int = 0, sample_weight: np.ndarray | None = None,
            score: Callable[[np.ndarray], float] | None = None) -> None:
        """Boost with early stopping on the dev loss (``score`` is not used)."""
        self.kind, self.models, self.best_iterations = kind, [], []
        if kind == "multilabel":
            for k in range(Y.shape[1]):
                self._train(self._params("binary", seed), X, Y[:, k], X_dev, Y_dev[:, k], None)
        elif kind in ("binary", "multiclass"):
            n_classes = Y.shape[1]
            y, y_dev = Y.argmax(axis=1), Y_dev.argmax(axis=1)
            params = (self._params("binary", seed) if n_classes == 2
                      else self._params("multiclass", seed, num_class=n_classes))
            self._train(params, X, y, X_dev, y_dev, sample_weight)
        else:
            self._train(self._params("regression", seed), X, Y[:, 0], X_dev, Y_dev[:, 0], None)
        self._load()

    def _load(self) -> None:
        import lightgbm as lgb

        self._boosters = [lgb.Booster(model_str=s) for s in self.models]

    def predict(self, X: np.ndarray) -> np.ndarray:
        scores = [b.predict(X) for b in self._boosters]
        if self.kind == "multilabel":
            return np.stack(scores, axis=1)
        if self.kind in ("binary", "multiclass") and scores[0].ndim == 1:
            return np.stack([1.0 - scores[0], scores[0]], axis=1)
        return scores[0]

    def explain(self, ds: Any) -> np.ndarray:
        """Each modality's share of the total split gain over all boosters (counts included): (1, M) in
        the order of ``ds.modalities``, one row for the whole model."""
        gain = np.sum([b.feature_importance("gain") for b in self._boosters], axis=0)
        shares: dict[str, float] = {}
        for name, g in zip(self.feature_names(ds), gain):
            shares[modality_of_feature(name)] = shares.get(modality_of_feature(name), 0.0) + float(g)
        total = sum(shares.values())
        return np.array([[shares.get(m, 0.0) / total if total > 0 else 0.0 for m in ds.modalities]])

    def extras(self) -> dict[str, Any]:
        return {"boosting_rounds": self.best_iterations}

    @property
    def n_params(self) -> int:
        """Leaf values over all trees."""
        return int(sum(int(n) for s in self.models for n in re.findall(r"^num_leaves=(\d+)", s, re.M)))

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "boosters": list(self.models), "best_iterations": list(self.best_iterations)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kind, self.models = state["kind"], list(state["boosters"])
        self.best_iterations = [int(i) for i in state["best_iterations"]]
        self._load()


lightgbm = builder(LightGBMModel, LightGBMConfig)


# --------------------------------------------------------------------------- logistic regression


@dataclass
class LogRegConfig:
    input_dims: dict[str, int]
    n_classes: int
    pooling: str = "mean"
    counts: bool = True
    # inverse L2 strength (ridge alpha = 1 / C for regression); with several, dev picks one
    C: float | tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    max_iter: int = 1000
    input_kinds: dict[str, str] | None = None

    def __post_init__(self) -> None:
        check_inputs(self, "LogRegConfig")
        self.C = tuple(float(c) for c in (self.C if isinstance(self.C, (list, tuple)) else [self.C]))
        if not self.C or min(self.C) <= 0 or not all(math.isfinite(c) for c in self.C):
            raise ValueError(f"LogRegConfig.C must be one or more finite numbers > 0, got {self.C}")


_LOGREG_ARRAYS = ("mean", "scale", "low", "high", "coef", "intercept")
_CONSTANT_LOGIT = 30.0  # a label that is constant in training keeps that value with near certainty


class LogRegModel(FittedModel):
    """Standardised features -> linear scores -> sigmoid per label (multi-label), softmax over classes
    (single-label) or the value itself (regression). Fitted by scikit-learn (the L2 strength chosen on
    dev among ``config.C``), applied in numpy.

    Standardised features are clipped to their training range: a CNN feature that is almost always 0
    has a tiny standard deviation, and one unseen activation would otherwise dominate a prediction.
    A missing modality's zeros are standardised like any value: they read as (0 - training mean) / scale.
    """

    selection = "C by dev {metric}"

    def __init__(self, config: LogRegConfig):
        self.config = config
        self.link = "sigmoid"
        self.chosen_C: float | None = None
        self.mean = self.scale = self.low = self.high = self.coef = self.intercept = None

    def fit(self, X, Y, X_dev, Y_dev, kind: str, seed: int = 0, sample_weight: np.ndarray | None = None,
            score: Callable[[np.ndarray], float] | None = None) -> None:
        """``score(dev predictions)`` (larger is better) picks C when there are several."""
        self.mean = X.mean(axis=0)
        scale = X.std(axis=0)
        self.scale = np.where(scale > 0, scale, 1.0)
        Xs = (X - self.mean) / self.scale
        self.low, self.high = Xs.min(axis=0), Xs.max(axis=0)
        best = None
        for C in self.config.C:
            self._fit(Xs, Y, kind, C, seed, sample_weight)
            if len(self.config.C) == 1:
                self.chosen_C = C
                return
            value = score(self.predict(X_dev)) if score is not None else 0.0
            if best is None or value > best[0]:  # ties keep the smaller C: the stronger regularisation
                best = (value, C, self.coef, self.intercept, self.link)
        _, self.chosen_C, self.coef, self.intercept, self.link = best

    def _fit(self, Xs, Y, kind: str, C: float, seed: int, sample_weight: np.ndarray | None) -> None:
        from sklearn.linear_model import LogisticRegression, Ridge

        def logreg() -> LogisticRegression:
            return LogisticRegression(C=C, max_iter=self.config.max_iter, random_state=seed)

        n_features = Xs.shape[1]
        if kind == "regression":
            self.link = "identity"
            ridge = Ridge(alpha=1.0 / C).fit(Xs, Y[:, 0])
            self.coef, self.intercept = ridge.coef_[None, :], np.array([ridge.intercept_])
        elif kind == "multilabel":
            self.link = "sigmoid"
            self.coef = np.zeros((Y.shape[1], n_features))
            self.intercept = np.zeros(Y.shape[1])
            for k in range(Y.shape[1]):
                y = Y[:, k]
                if np.all(y == y[0]):
                    self.intercept[k] = _CONSTANT_LOGIT if y[0] else -_CONSTANT_LOGIT
                    continue
                model = logreg().fit(Xs, y)
                self.coef[k], self.intercept[k] = model.coef_[0], model.intercept_[0]
        else:
            self.link = "softmax"
            n_classes = Y.shape[1]
            y = Y.argmax(axis=1)
            self.coef = np.zeros((n_classes, n_features))
            self.intercept = np.full(n_classes, -_CONSTANT_LOGIT)  # classes absent from training
            present = np.unique(y)
            if len(present) == 1:
                self.intercept[present[0]] = 0.0
            else:
                model = logreg().fit(Xs, y, sample_weight=sample_weight)
                if len(present) == 2:  # sklearn's one row scores the second class against the first
                    self.coef[present[1]], self.intercept[present] = model.coef_[0], (0.0, model.intercept_[0])
                else:
                    self.coef[present], self.intercept[present] = model.coef_, model.intercept_

    def predict(self, X: np.ndarray) -> np.ndarray:
        z = np.clip((X - self.mean) / self.scale, self.low, self.high) @ self.coef.T + self.intercept
        if self.link == "identity":
            return z[:, 0]
        if self.link == "sigmoid":
            return 1.0 / (1.0 + np.exp(-z))
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    @property
    def n_params(self) -> int:
        return int(self.coef.size + self.intercept.size)

    def extras(self) -> dict[str, Any]:
        return {"chosen_C": self.chosen_C}

    def state_dict(self) -> dict[str, Any]:
        return {"link": self.link, "C": self.chosen_C, **{k: torch.as_tensor(np.asarray(getattr(self, k), np.float64))
                                      for k in _LOGREG_ARRAYS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.link, self.chosen_C = state["link"], state.get("C")
        for k in _LOGREG_ARRAYS:
            setattr(self, k, state[k].numpy())


logreg = builder(LogRegModel, LogRegConfig)

