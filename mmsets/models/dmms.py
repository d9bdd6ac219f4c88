"""Deep Multi-Modal Sets (Reiter, Jia, Yang, Lim; arXiv:2003.01607).

Every occurrence of every modality is an element of one set: ``phi_i`` maps modality i's elements
to a common size D (Sec. 3.3, 4.3), ``psi`` pools the whole set into one D-vector invariant to the
order and number of its elements (Eq. 1, 2), and ``rho`` classifies it (Eq. 3). With max pooling the
argmax of each dimension names the modality that "won" it: its feature importance (Sec. 3.3.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmsets.data.sets import FLOAT, INDEX, KINDS, SetBatch


@dataclass
class DMMSConfig:
    input_dims: dict[str, int]  # modality name -> element size M_i (table size for an index modality), in set order
    n_classes: int
    d_model: int = 1024  # D: 1024 for MM-IMDb, 32 for Ads-Parallelity (Sec. 4.3)
    dropout: float = 0.25  # inside each phi_i
    pooling: str = "max"  # psi: max | min | mean | sum
    head_hidden: tuple[int, ...] = (256, 128)  # rho: D -> 256 -> 128 -> C for MM-IMDb, (32,) for Ads
    head_dropout: float = 0.25  # the paper gives none for rho; we reuse phi's rate
    prior: float = 0.01  # pi in the last bias -log((1 - pi) / pi)
    input_kinds: dict[str, str] | None = None  # modality -> "float" | "index" (SetDataset.input_kinds); None: float

    def __post_init__(self) -> None:
        self.input_dims = {str(k): int(v) for k, v in self.input_dims.items()}
        kinds = {str(k): str(v) for k, v in (self.input_kinds or {}).items()}
        unknown = sorted(set(kinds) - set(self.input_dims))
        if unknown:
            raise ValueError(f"DMMSConfig.input_kinds: {unknown} are not in input_dims {list(self.input_dims)}")
        self.input_kinds = {name: kinds.get(name, FLOAT) for name in self.input_dims}
        for name, kind in self.input_kinds.items():
            if kind not in KINDS:
                raise ValueError(f"DMMSConfig.input_kinds[{name!r}]: {kind!r} is not one of {list(KINDS)}")
        self.head_hidden = tuple(int(h) for h in self.head_hidden)
        if not self.input_dims:
            raise ValueError("DMMSConfig.input_dims: at least one modality is needed")
        if self.pooling not in POOLINGS:
            raise ValueError(f"DMMSConfig.pooling: {self.pooling!r} is not one of {sorted(POOLINGS)}")
        if not 0.0 < self.prior < 1.0:
            raise ValueError(f"DMMSConfig.prior must lie in (0, 1), got {self.prior}")
        if self.n_classes < 1:
            raise ValueError(f"DMMSConfig.n_classes must be >= 1, got {self.n_classes}")


class ModalityEncoder(nn.Module):
    """phi_i: one fully-connected layer, ELU and dropout to the common size D (Sec. 4.3)."""

    def __init__(self, in_features: int, out_features: int, act_layer: type[nn.Module] = nn.ELU, drop: float = 0.0):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)
        self.act = act_layer()
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.act(self.fc(x)))


class IndexEncoder(nn.Module):
    """phi_i for a modality of class indices: a learned lookup table, ELU and dropout ("Index Embeddings", Sec. 4.2)."""

    def __init__(self, num_embeddings: int, out_features: int, act_layer: type[nn.Module] = nn.ELU, drop: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(num_embeddings, out_features)
        # A lookup table is a linear layer over one-hot inputs; started as nn.Linear starts instead of at N(0, 1),
        # an index modality does not win every max-pooled dimension before training has begun.
        bound = 1.0 / math.sqrt(num_embeddings)
        nn.init.uniform_(self.embed.weight, -bound, bound)
        self.act = act_layer()
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.act(self.embed(x)))


ENCODERS: dict[str, type[nn.Module]] = {FLOAT: ModalityEncoder, INDEX: IndexEncoder}


# Each reduction takes elements (B, S, D), mask (B, S) and whether to return the index of the chosen
# element, and returns (pooled (B, D), index (B, D) | None). Padding never reaches the result; an item
# with no element at all pools to zeros, a neutral input for rho that keeps the loss finite (the paper
# never meets such an item: every sample has an image). Only the feature importance needs the index,
# and max/min without it are several times faster on a CPU.

def _masked_extreme(x: Tensor, mask: Tensor, with_index: bool, largest: bool) -> tuple[Tensor, Tensor | None]:
    filled = x.masked_fill(~mask.unsqueeze(-1), -math.inf if largest else math.inf)
    if with_index:
        values, index = filled.max(dim=1) if largest else filled.min(dim=1)
    else:
        values, index = (filled.amax(dim=1) if largest else filled.amin(dim=1)), None
    return values.masked_fill(~mask.any(dim=1, keepdim=True), 0.0), index


def _masked_max(x: Tensor, mask: Tensor, with_index: bool = False) -> tuple[Tensor, Tensor | None]:
    return _masked_extreme(x, mask, with_index, largest=True)


def _masked_min(x: Tensor, mask: Tensor, with_index: bool = False) -> tuple[Tensor, Tensor | None]:
    return _masked_extreme(x, mask, with_index, largest=False)


def _masked_sum(x: Tensor, mask: Tensor, with_index: bool = False) -> tuple[Tensor, None]:
    # A (B, 1, S) x (B, S, D) product: padded rows are multiplied by 0 (they are finite: encoder outputs).
    return torch.bmm(mask.unsqueeze(1).to(x.dtype), x).squeeze(1), None


def _masked_mean(x: Tensor, mask: Tensor, with_index: bool = False) -> tuple[Tensor, None]:
    total, _ = _masked_sum(x, mask)
    return total / mask.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype), None


POOLINGS: dict[str, Callable[..., tuple[Tensor, Tensor | None]]] = {
    "max": _masked_max,
    "min": _masked_min,
    "sum": _masked_sum,
    "mean": _masked_mean,
}


class SetPooling(nn.Module):
    """psi (Eq. 1, 2): masked pooling over the set dimension.

    Returns ``(pooled (B, D), index)``; ``index`` (B, D) is the element chosen per dimension for
    max/min pooling (the argmax of Sec. 3.3.1) and None for sum/mean, which select nothing. The
    result equals pooling the unpadded set and does not depend on element order. An item with no
    element at all pools to a zero vector (its index is meaningless and masked by the caller).
    """

    def __init__(self, reduction: str = "max"):
        super().__init__()
        if reduction not in POOLINGS:
            raise ValueError(f"pooling {reduction!r} is not one of {sorted(POOLINGS)}")
        self.reduction = reduction
        self.reduce = POOLINGS[reduction]
        self.selects = reduction in ("max", "min")

    def forward(self, x: Tensor, mask: Tensor, with_index: bool = True) -> tuple[Tensor, Tensor | None]:
        return self.reduce(x, mask, with_index)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class SetPredictor(nn.Sequential):
    """rho (Eq. 3): an MLP D -> hidden... -> C whose last bias encodes the prior pi [Lin et al., focal loss]."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], n_classes: int, act_layer: type[nn.Module] = nn.ELU,
                 drop: float = 0.0, prior: float = 0.01):
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_features, width), act_layer(), nn.Dropout(drop)]
            in_features = width
        layers.append(nn.Linear(in_features, n_classes))
        super().__init__(*layers)
        # Start every class at probability pi so the first steps are not swamped by easy negatives.
        nn.init.constant_(layers[-1].bias, -math.log((1.0 - prior) / prior))


class DeepMultiModalSets(nn.Module):
    """rho(psi({phi_i(x) : x in X_i, i in I})) over one set holding every element of every modality (Sec. 3.3)."""

    def __init__(self, config: DMMSConfig):
        super().__init__()
        self.config = config
        self.modalities = list(config.input_dims)
        self.encoders = nn.ModuleDict({
            name: ENCODERS[config.input_kinds[name]](dim, config.d_model, nn.ELU, config.dropout)
            for name, dim in config.input_dims.items()
        })
        self.pool = SetPooling(config.pooling)
        self.rho = SetPredictor(config.d_model, config.head_hidden, config.n_classes, nn.ELU, config.head_dropout,
                                config.prior)

    def encode(self, batch: SetBatch) -> tuple[Tensor, Tensor, Tensor]:
        """All modalities' encoded elements as one padded set: (B, S, D), mask (B, S), modality id (S,)."""
        missing = [name for name in self.modalities if name not in batch.modalities]
        if missing:
            raise KeyError(f"batch lacks modalities {missing}; the model expects {self.modalities}")
        elements, masks, modality = [], [], []
        for i, name in enumerate(self.modalities):
            x, mask = batch.modalities[name]
            if (self.config.input_kinds[name] == INDEX) != (x.dtype == torch.long):
                raise TypeError(f"modality {name!r}: the batch holds {'ids' if x.dtype == torch.long else 'vectors'} "
                                f"but the model was built with input_kinds[{name!r}] = "
                                f"{self.config.input_kinds[name]!r}; pass input_kinds=dataset.input_kinds")
            elements.append(self.encoders[name](x))
            masks.append(mask)
            modality.append(torch.full((x.shape[1],), i, dtype=torch.long, device=x.device))
        return torch.cat(elements, dim=1), torch.cat(masks, dim=1), torch.cat(modality)

    def forward(self, batch: SetBatch) -> Tensor:
        x, mask, _ = self.encode(batch)
        pooled, _ = self.pool(x, mask, with_index=False)
        return self.rho(pooled)

    @torch.no_grad()
    def explain(self, batch: SetBatch) -> Tensor:
        """Feature importance (Sec. 3.3.1): per item, the share of the D pooled dimensions won by each modality.

        Returns (B, M) in the order of ``self.modalities``; rows sum to 1 for items with at least one
        element and are zero for an item with none. Only max and min pooling select an element.
        """
        if not self.pool.selects:
            raise NotImplementedError(f"feature importance needs max or min pooling, not {self.pool.reduction!r}")
        x, mask, modality = self.encode(batch)
        _, index = self.pool(x, mask)
        winners = F.one_hot(modality[index], len(self.modalities)).to(x.dtype)  # (B, D, M)
        return winners.mean(dim=1) * mask.any(dim=1, keepdim=True).to(x.dtype)


def dmms(config: DMMSConfig | None = None, **kwargs) -> DeepMultiModalSets:
    """Deep Multi-Modal Sets from `Deep Multi-Modal Sets <https://arxiv.org/abs/2003.01607>`_.

    Args:
        config: a :class:`DMMSConfig`; keyword arguments override its fields, or build one when
            ``config`` is None (``input_dims`` and ``n_classes`` are then required).

    Returns:
        A :class:`DeepMultiModalSets` whose ``forward(batch)`` gives logits (B, n_classes) and
        ``explain(batch)`` the per-modality feature-importance shares (B, M).
    """
    config = DMMSConfig(**kwargs) if config is None else replace(config, **kwargs)
    return DeepMultiModalSets(config)
