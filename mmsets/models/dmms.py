"""Deep Multi-Modal Sets (Reiter, Jia, Yang, Lim; arXiv:2003.01607).

Every occurrence of every modality is an element of one set: ``phi_i`` maps modality i's elements
to a common size D (Sec. 3.3, 4.3), ``psi`` pools the whole set into one D-vector invariant to the
order and number of its elements (Eq. 1, 2), and ``rho`` classifies it (Eq. 3). With max pooling the
argmax of each dimension names the modality that "won" it: its feature importance (Sec. 3.3.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmsets.data.sets import INDEX, SetBatch
from mmsets.models.parts import ENCODERS, INDEX_ENCODERS, SetPooling, SetPredictor, TrainedModel, builder, check_inputs


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
    index_encoder: str = "lookup"  # index modalities: each id an element (lookup), or one from all (text_cnn: IE)

    def __post_init__(self) -> None:
        check_inputs(self, "DMMSConfig")
        if self.index_encoder not in INDEX_ENCODERS:
            raise ValueError(f"DMMSConfig.index_encoder: {self.index_encoder!r} is not one of {list(INDEX_ENCODERS)}")


class DeepMultiModalSets(TrainedModel):
    """rho(psi({phi_i(x) : x in X_i, i in I})) over one set holding every element of every modality (Sec. 3.3)."""

    explain_kind = "argmax"  # feature importance: the modality that won each pooled dimension (Sec. 3.3.1)

    def __init__(self, config: DMMSConfig):
        super().__init__()
        self.config = config
        self.modalities = list(config.input_dims)
        encoders = {**ENCODERS, INDEX: INDEX_ENCODERS[config.index_encoder]}
        self.encoders = nn.ModuleDict({
            name: encoders[config.input_kinds[name]](dim, config.d_model, nn.ELU, config.dropout)
            for name, dim in config.input_dims.items()
        })
        self.pool = SetPooling(config.pooling)
        self.rho = SetPredictor(config.d_model, config.head_hidden, config.n_classes, nn.ELU, config.head_dropout,
                                config.prior)

    @property
    def output_layer(self) -> nn.Linear:
        return self.rho[-1]

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
            encoder = self.encoders[name]
            if getattr(encoder, "whole_set", False):  # one element per item from all of its ids
                encoded, mask = encoder(x, mask), mask.any(dim=1, keepdim=True)
            else:
                encoded = encoder(x)
            elements.append(encoded)
            masks.append(mask)
            modality.append(torch.full((encoded.shape[1],), i, dtype=torch.long, device=x.device))
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


dmms = builder(DeepMultiModalSets, DMMSConfig)
