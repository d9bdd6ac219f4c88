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

NO_SHARES = "none"  # an Importance without per-modality shares, kept for its token weights

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
    # DM2S2 with IntraMRA: per-token weights of the first items, {id: weights over its tokens in store order}
    token_weights: dict[str, list[float]] | None = None


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


TOKEN_ITEMS = 8  # items whose IntraMRA weights a run keeps for the report's heat map (DM2S2 Fig. 3)


def intra_weights(model: Any, batches: Iterable, n_items: int = TOKEN_ITEMS) -> dict[str, list[float]] | None:
    """IntraMRA's per-token weights of the first ``n_items`` items, each over its tokens (specials
    included, at 0) in the order the token store holds them; None when the model has no IntraMRA."""
    import torch

    attention = getattr(model, "attention", None)
    if attention is None:
        return None
    model.eval()
    device = next(model.parameters()).device
    out: dict[str, list[float]] = {}
    with torch.no_grad():
        for batch in batches:
            intra = attention(batch.to(device)).get("intra")
            if intra is None:
                return None
            lengths = batch.token_mask.sum(dim=1).tolist()
            for item_id, weights, t in zip(batch.ids, intra.float().cpu().numpy(), lengths):
                out[item_id] = weights[: int(t)].round(5).tolist()
                if len(out) == n_items:
                    return out
    return out


def mean_share(shares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean row over the items that have elements (an item without any has a zero row), and which those are."""
    with_elements = shares.sum(axis=1) > 0
    mean = shares[with_elements].mean(axis=0) if with_elements.any() else np.zeros(shares.shape[1])
    return mean, with_elements
