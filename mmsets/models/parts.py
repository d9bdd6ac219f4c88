"""The parts every model family shares: phi (per-modality encoders to a common size), psi (masked set
pooling, Eq. 1-2 of Deep Multi-Modal Sets) and rho (the prediction MLP, Eq. 3); ``TrainedModel``, what the
epoch loop asks of a family it trains; the checks of the data-given config fields every set-input family has
(``input_dims``, ``input_kinds``, ``n_classes``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable, Iterable, TypeVar

import torch
from torch import Tensor, nn

from mmsets.data.sets import FLOAT, INDEX, KINDS
from mmsets.plan.spec import check_numbers

__all__ = ["ModalityEncoder", "IndexEncoder", "IndexCNNEncoder", "ENCODERS", "INDEX_ENCODERS", "POOLINGS", "SetPooling",
           "SetPredictor", "TrainedModel", "param_groups", "builder", "check_inputs",
           "FLOAT", "INDEX", "KINDS"]


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


class IndexCNNEncoder(nn.Module):
    """phi_i for a modality with several class indices per item, as one element: a learned lookup table
    and a text CNN over the item's ids (Kim 2014; DMMS Sec. 4.2 "IE": "for situations where there are more
    than one indices for a sample, we use the model architecture in [13] to encode this sequence further
    into a single embedding"). Convolutions of each width, ReLU, max over positions, then a linear layer,
    ELU and dropout to D. ``whole_set``: it maps an item's elements (B, S) with their mask to (B, 1, D)."""

    whole_set = True

    def __init__(self, num_embeddings: int, out_features: int, act_layer: type[nn.Module] = nn.ELU, drop: float = 0.0,
                 embed_dim: int = 128, widths: tuple[int, ...] = (3, 4, 5), filters: int = 100):
        super().__init__()
        self.pad = num_embeddings  # one extra row, kept at zero: padding and the positions past an item's ids
        self.embed = nn.Embedding(num_embeddings + 1, embed_dim, padding_idx=self.pad)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, filters, w) for w in widths)
        self.width = max(widths)
        self.fc = nn.Linear(filters * len(widths), out_features)
        self.act = act_layer()
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        ids = x.masked_fill(~mask, self.pad)
        if ids.shape[1] < self.width:  # a sequence shorter than the widest filter is padded, as Kim pads
            ids = nn.functional.pad(ids, (0, self.width - ids.shape[1]), value=self.pad)
        h = self.embed(ids).transpose(1, 2)  # (B, E, S)
        n = mask.sum(dim=1, keepdim=True)  # ids per item; they come first, padding after
        pooled = []
        for conv in self.convs:
            out = conv(h)  # (B, F, positions)
            # Windows past an item's ids would see only padding: left out, so the batch's padding length
            # does not change an item's embedding (an item shorter than the filter keeps its first window).
            starts = torch.arange(out.shape[2], device=x.device)[None, :]
            valid = starts < (n - conv.kernel_size[0] + 1).clamp(min=1)
            pooled.append(torch.relu(out.masked_fill(~valid[:, None, :], -math.inf).amax(dim=2)))
        return self.drop(self.act(self.fc(torch.cat(pooled, dim=1)))).unsqueeze(1)


ENCODERS: dict[str, type[nn.Module]] = {FLOAT: ModalityEncoder, INDEX: IndexEncoder}
# How a modality of indices becomes elements: each id its own element, or one element from all of them.
INDEX_ENCODERS: dict[str, type[nn.Module]] = {"lookup": IndexEncoder, "text_cnn": IndexCNNEncoder}


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


def param_groups(parameters: Iterable[nn.Parameter], lr: float, weight_decay: float,
                 pretrained: nn.Module | None = None, pretrained_lr: float | None = None) -> list[dict[str, Any]]:
    """AdamW's groups: the parameters trained from scratch at ``lr``, then those of ``pretrained`` at
    ``pretrained_lr``; in each, the matrices decayed, then the vectors not. Empty groups are left out."""
    # Vectors are not decayed: decaying biases would pull the prior-initialised last bias back to 0.
    tuned = {id(p) for p in pretrained.parameters()} if pretrained is not None else set()
    parameters = [p for p in parameters if p.requires_grad]
    groups = []
    for part, part_lr in ((False, lr), (True, pretrained_lr)):
        params = [p for p in parameters if (id(p) in tuned) == part]
        groups += [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay, "lr": part_lr},
                   {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, "lr": part_lr}]
    return [g for g in groups if g["params"]]


class TrainedModel(nn.Module):
    """A family the epoch loop trains (``mmsets.runs.loop``): ``forward(batch)`` gives logits, the model gives
    its optimizer's parameter groups (as nanoGPT's model configures its optimizer) and names the last linear
    layer of its head, whose bias a task without sigmoid outputs starts at 0."""

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        return param_groups(self.parameters(), lr, weight_decay)

    @property
    def output_layer(self) -> nn.Linear:
        raise NotImplementedError(f"{type(self).__name__} does not name its output layer")


def check_inputs(config: Any, name: str) -> None:
    """Normalise and check the data-given fields of a set-input family's config, and its pooling and prior."""
    config.input_dims = {str(k): int(v) for k, v in config.input_dims.items()}
    if not config.input_dims:
        raise ValueError(f"{name}.input_dims: at least one modality is needed")
    kinds = {str(k): str(v) for k, v in (config.input_kinds or {}).items()}
    unknown = sorted(set(kinds) - set(config.input_dims))
    if unknown:
        raise ValueError(f"{name}.input_kinds: {unknown} are not in input_dims {list(config.input_dims)}")
    config.input_kinds = {m: kinds.get(m, FLOAT) for m in config.input_dims}
    for m, kind in config.input_kinds.items():
        if kind not in KINDS:
            raise ValueError(f"{name}.input_kinds[{m!r}]: {kind!r} is not one of {list(KINDS)}")
    if config.pooling not in POOLINGS:
        raise ValueError(f"{name}.pooling: {config.pooling!r} is not one of {sorted(POOLINGS)}")
    check_numbers(config, name, ValueError)
    check_dropouts(config, name)
    if config.n_classes < 1:
        raise ValueError(f"{name}.n_classes must be >= 1, got {config.n_classes}")
    if hasattr(config, "head_hidden"):
        config.head_hidden = tuple(int(h) for h in config.head_hidden)
    if hasattr(config, "prior") and not 0.0 < config.prior < 1.0:
        raise ValueError(f"{name}.prior must lie in (0, 1), got {config.prior}")


def check_dropouts(config: Any, name: str) -> None:
    """Every dropout rate of a family's config in [0, 1]."""
    for key in ("dropout", "head_dropout"):
        rate = getattr(config, key, None)
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name}.{key} must lie in [0, 1], got {rate}")


Model = TypeVar("Model")


def builder(model_cls: Callable[[Any], Model], config_cls: type) -> Callable[..., Model]:
    """A family's builder, ``build(config=None, **fields)``: the model of ``config_cls(**fields)``, or of
    ``config`` with ``fields`` replacing its own."""

    def build(config: Any = None, **fields: Any) -> Model:
        return model_cls(config_cls(**fields) if config is None else replace(config, **fields))

    build.__doc__ = (f"A :class:`{model_cls.__name__}` of a :class:`{config_cls.__name__}`: ``config`` with "
                     f"``fields`` replacing its own, or one built from ``fields``.")
    return build
