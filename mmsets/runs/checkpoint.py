"""A run's ``model.pt``: the model's weights (or a fitted model's state) and what rebuilds it, loadable
with ``torch.load(weights_only=True)``. A k-fold run holds one model per fold. Keys: docs/formats.md.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np
import torch

from mmsets.io import atomic_path
from mmsets.plan.families import build_model


def plain(obj: Any) -> Any:
    """JSON/weights_only-safe builtins (tuples become lists, numpy scalars Python numbers)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


# Settings renamed since a checkpoint may have been written: {family: {old name: new name}}
RENAMED_SETTINGS = {"late_fusion": {"hidden": "head_hidden"}, "gmu": {"hidden": "head_hidden"}}


def current_settings(model: str, model_config: dict) -> dict:
    """A recorded model config with the settings renamed since it was written under their names of today."""
    renamed = RENAMED_SETTINGS.get(model, {})
    return {renamed.get(key, key): value for key, value in model_config.items()}


def save_checkpoint(path: str | os.PathLike, config: dict, state_dict: dict, folds: list[dict] | None = None) -> None:
    checkpoint: dict[str, Any] = {"config": config, "state_dict": state_dict}
    if folds is not None:
        checkpoint["folds"] = folds
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


class CheckpointError(ValueError):
    """A ``model.pt`` that is not one mmsets wrote; the message names the file and the cause in one line."""


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """``model.pt`` as saved: its config, weights and, for a k-fold run, every fold's part. A file holding
    anything else (a pickled object whose loading would run code) is refused unread."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: refused, it holds more than weights and settings ({unpickling_cause(err)}); "
                              f"nothing in it was run: a model.pt from mmsets never needs weights_only=False") from None
    except (EOFError, RuntimeError) as err:  # empty, truncated, not a zip archive
        raise CheckpointError(f"{path}: not a readable model.pt ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else 'the file ends early'})") from None


def unpickling_cause(err: pickle.UnpicklingError) -> str:
    """The line of torch's several-paragraph weights-only refusal that says what the file holds."""
    paragraphs = [p.strip() for p in str(err).split("\n\n") if p.strip()]
    causes = [p for p in paragraphs if not p.startswith(("Weights only load failed", "Check the documentation"))]
    return " ".join((causes[-1] if causes else paragraphs[0] if paragraphs else "unpickling failed").split())


def n_folds(checkpoint: dict) -> int:
    """How many models a checkpoint holds: one per fold of a k-fold run, else one."""
    return len(checkpoint.get("folds", [None]))


def fold_model(checkpoint: dict, fold: int | None = None, path: str | os.PathLike = "model.pt") -> tuple[Any, dict]:
    """The model of one fold of a read checkpoint (in eval mode) and its config dict.

    A k-fold run holds one model per fold: ``fold`` picks one (default 0) and the config's
    ``decision`` and ``task`` are that fold's.
    """
    config = dict(checkpoint["config"])
    state = checkpoint["state_dict"]
    if "folds" in checkpoint:
        part = checkpoint["folds"][fold or 0]
        state = part["state_dict"]
        config.update(decision=part["decision"], task=part["task"], fold=fold or 0)
    elif fold not in (None, 0):
        raise ValueError(f"{path}: not a k-fold run, it has no fold {fold}")
    config["model_config"] = current_settings(config["model"], config["model_config"])
    model = build_model(config["model"], **config["model_config"])
    model.load_state_dict(state)
    return model.eval(), config


def load_models(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> list[tuple[Any, dict]]:
    """Every model of a run's ``model.pt`` (one per fold of a k-fold run) with its config, from one read."""
    checkpoint = read_checkpoint(path, map_location)
    return [fold_model(checkpoint, k, path) for k in range(n_folds(checkpoint))]


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", fold: int | None = None
                    ) -> tuple[Any, dict]:
    """One model of a run's ``model.pt`` (``fold`` of a k-fold run, default 0) and its config dict."""
    return fold_model(read_checkpoint(path, map_location), fold, path)
