"""Feature importance: each modality's share of a prediction, the one form every family reports.

A family that can say which modality mattered has ``explain``, returning shares of one shape, a row of
M shares per item (M = the model's modalities, in its order; a row sums to 1, or is 0 for an item with
no element at all), and names what the shares measure in ``explain_kind``:

===============  ========================  ====================================================
kind             families                  a share is
===============  ========================  ====================================================
argmax           DMMS, max or min pooling  the pooled dimensions whose max (min) came from it
gate             GMU                       the gate's mean weight
inter_attention  DM2S2 with InterMRA       the InterMRA attention weight
gain             LightGBM                  its features' share of the split gain (one row for
                                           the whole model, not per item)
===============  ========================  ====================================================

The kinds measure different things: the report never mixes them in one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

# kind -> (label, what it measures), for the report
KINDS: dict[str, tuple[str, str]] = {
    "argmax": ("argmax share", "DMMS max/min pooling: share of the pooled dimensions whose maximum (minimum) "
                               "came from each modality."),
    "gate": ("GMU gate", "GMU: mean gate weight of each modality."),
    "gain": ("LightGBM gain share", "LightGBM: share of the total split gain on each modality's features."),
    "inter_attention": ("InterMRA attention", "DM2S2: mean InterMRA attention weight of each modality "
                                              "(token-sequence sources)."),
    "share": ("share", "Feature-importance share per modality."),
}


@dataclass
class Importance:
    """What ``explain`` said over a dataset: ``shares`` (N, M), one row per item, or (1, M) for the whole
    model when ``per_item`` is False."""

    kind: str
    shares: np.ndarray
    per_item: bool = True


def explain_batches(model: Any, batches: Iterable) -> np.ndarray:
    """``model.explain`` over batches on the model's device: (N, M). NotImplementedError if it has none."""
    import torch  # here: the report reads KINDS in an environment without torch

    explain = getattr(model, "explain", None)
    if explain is None:
        raise NotImplementedError(f"{type(model).__name__} has no explain()")
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        shares = [explain(batch.to(device)).float().cpu().numpy() for batch in batches]
    return np.concatenate(shares) if shares else np.zeros((0, 0), np.float32)


def mean_share(shares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean row over the items that have elements (an item without any has a zero row), and which those are."""
    with_elements = shares.sum(axis=1) > 0
    mean = shares[with_elements].mean(axis=0) if with_elements.any() else np.zeros(shares.shape[1])
    return mean, with_elements
