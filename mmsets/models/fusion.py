"""Neural fusion baselines on the same set features, splits and metrics as Deep Multi-Modal Sets.

Fixed-size fusion, the kind DMMS argues against (Sec. 1): each modality's elements are pooled to one
vector (an index modality's ids to their histogram). A missing modality, one of which an item has no
element, fills its place with zeros: the placeholder DMMS Sec. 3.1 calls typical and unnatural. Late fusion
adds a presence flag per modality so its MLP can tell a missing modality from one pooled to zeros; the GMU
has none.

- ``late_fusion``: concatenation of the per-modality vectors and presence flags, then an MLP (the
  "late fusion technique" of DMMS Sec. 1).
- ``gmu``: the Gated Multimodal Unit of Arevalo et al., "Gated Multimodal Units for Information
  Fusion" (ICLR workshop 2017, Sec. 3; arXiv:1702.01992), for two modalities, then an MLP; its gate is the feature
  importance.

Both are trained by the epoch loop like DMMS. The fitted baselines on the same pooled features
(LightGBM, logistic regression) are in ``mmsets.models.fitted``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmsets.data.sets import SetBatch
from mmsets.models.parts import INDEX, SetPooling, SetPredictor, TrainedModel, builder, check_inputs


def _missing(batch: SetBatch, modalities: Sequence[str]) -> None:
    missing = [name for name in modalities if name not in batch.modalities]
    if missing:
        raise KeyError(f"batch lacks modalities {missing}; the model expects {list(modalities)}")


def _vectors(x: Tensor, kind: str, dim: int) -> Tensor:
    """Elements as vectors: an index modality's ids become one-hot rows, so its mean is the
    histogram of its ids (padding rows are masked by the pooling)."""
    return F.one_hot(x, dim).to(torch.float32) if kind == INDEX else x


class ModalityPooling(nn.Module):
    """Each modality's elements pooled to one vector (zeros when it has none) and its presence flag (B, 1)."""

    def __init__(self, input_dims: dict[str, int], input_kinds: dict[str, str], pooling: str):
        super().__init__()
        self.input_dims, self.input_kinds = dict(input_dims), dict(input_kinds)
        self.pool = SetPooling(pooling)

    def forward(self, batch: SetBatch) -> dict[str, tuple[Tensor, Tensor]]:
        _missing(batch, list(self.input_dims))
        out = {}
        for name, dim in self.input_dims.items():
            x, mask = batch.modalities[name]
            pooled, _ = self.pool(_vectors(x, self.input_kinds[name], dim), mask)
            out[name] = (pooled, mask.any(dim=1, keepdim=True).to(pooled.dtype))
        return out


# ------------------------------------------------------------------------------- late fusion


@dataclass
class LateFusionConfig:
    input_dims: dict[str, int]
    n_classes: int
    pooling: str = "mean"  # how a modality's elements become its one vector
    head_hidden: tuple[int, ...] = (256, 128)  # the MLP's hidden widths
    dropout: float = 0.25
    prior: float = 0.01
    input_kinds: dict[str, str] | None = None  # modality -> "float" | "index" (SetDataset.input_kinds)

    def __post_init__(self) -> None:
        check_inputs(self, "LateFusionConfig")


class LateFusion(TrainedModel):
    """MLP over ``[pool(X_1), present_1, ..., pool(X_M), present_M]``; a missing modality pools to zeros and its
    presence flag is 0."""

    def __init__(self, config: LateFusionConfig):
        super().__init__()
        self.config = config
        self.modalities = list(config.input_dims)
        self.pool = ModalityPooling(config.input_dims, config.input_kinds, config.pooling)
        in_features = sum(config.input_dims.values()) + len(self.modalities)
        self.head = SetPredictor(in_features, config.head_hidden, config.n_classes, nn.ELU, config.dropout, config.prior)

    @property
    def output_layer(self) -> nn.Linear:
        return self.head[-1]

    def fuse(self, batch: SetBatch) -> Tensor:
        return torch.cat([t for pair in self.pool(batch).values() for t in pair], dim=1)

    def forward(self, batch: SetBatch) -> Tensor:
        return self.head(self.fuse(batch))


late_fusion = builder(LateFusion, LateFusionConfig)


# ---------------------------------------------------------------------------------------- GMU


@dataclass
class GMUConfig:
    input_dims: dict[str, int]  # exactly two modalities, (x_1, x_2) in this order
    n_classes: int
    d_model: int = 512  # size of h
    pooling: str = "mean"
    head_hidden: tuple[int, ...] = (256, 128)  # the MLP's hidden widths
    dropout: float = 0.25
    prior: float = 0.01
    input_kinds: dict[str, str] | None = None

    def __post_init__(self) -> None:
        check_inputs(self, "GMUConfig")
        if len(self.input_dims) != 2:
            raise ValueError(f"GMUConfig.input_dims: the bimodal GMU takes exactly 2 modalities, got "
                             f"{list(self.input_dims)}")


class GatedMultimodalUnit(nn.Module):
    """Arevalo et al. 2017, Sec. 3, bimodal GMU: h_1 = tanh(W_1 x_1), h_2 = tanh(W_2 x_2),
    z = sigmoid(W_z [x_1; x_2]), h = z * h_1 + (1 - z) * h_2. Returns (h, z)."""

    def __init__(self, in_1: int, in_2: int, out_features: int):
        super().__init__()
        self.w1 = nn.Linear(in_1, out_features, bias=False)
        self.w2 = nn.Linear(in_2, out_features, bias=False)
        self.wz = nn.Linear(in_1 + in_2, out_features, bias=False)

    def forward(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        h1, h2 = torch.tanh(self.w1(x1)), torch.tanh(self.w2(x2))
        z = torch.sigmoid(self.wz(torch.cat([x1, x2], dim=1)))
        return z * h1 + (1.0 - z) * h2, z


class GMUClassifier(TrainedModel):
    """Pooled modality vectors -> GMU -> MLP. A missing modality's vector is zeros, with no presence flag: its
    h_m = tanh(0) = 0, and the gate z reads the zeros as it reads any x."""

    explain_kind = "gate"

    def __init__(self, config: GMUConfig):
        super().__init__()
        self.config = config
        self.modalities = list(config.input_dims)
        self.pool = ModalityPooling(config.input_dims, config.input_kinds, config.pooling)
        self.gmu = GatedMultimodalUnit(*config.input_dims.values(), config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.head = SetPredictor(config.d_model, config.head_hidden, config.n_classes, nn.ELU, config.dropout,
                                 config.prior)

    @property
    def output_layer(self) -> nn.Linear:
        return self.head[-1]

    def gate(self, batch: SetBatch) -> tuple[Tensor, Tensor]:
        x1, x2 = (pooled for pooled, _ in self.pool(batch).values())
        return self.gmu(x1, x2)

    def forward(self, batch: SetBatch) -> Tensor:
        h, _ = self.gate(batch)
        return self.head(self.drop(h))

    @torch.no_grad()
    def explain(self, batch: SetBatch) -> Tensor:
        """Share of each modality in h (B, 2): the gate's mean over dimensions, z for x_1 and 1 - z for x_2."""
        _, z = self.gate(batch)
        share = z.mean(dim=1, keepdim=True)
        return torch.cat([share, 1.0 - share], dim=1)


gmu = builder(GMUClassifier, GMUConfig)
