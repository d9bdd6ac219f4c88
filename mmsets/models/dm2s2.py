"""Deep Multi-Modal Sequence Sets (DM2S2; Kitada, Iwazaki, Togashi, Iyatomi; IEEE Access 2022,
doi:10.1109/ACCESS.2022.3221812).

One frozen BERT-style encoder reads every modality's tokens as ``[CLS] m1 [SEP] ... mM [SEP]``
(Eq. 2); on its hidden states, IntraMRA weighs each token within its modality (Eq. 9-11),
InterMRA weighs each modality against the others (Eq. 12-15), mean pooling over the modality
tokens gives h (Eq. 5) and an MLP rho predicts (Eq. 6). The encoder runs upstream
(``mmsets.data.sequences``); this module starts from its states.

Invariance. Given the same per-token states, everything here is invariant to any reordering of
the tokens that keeps each token's modality: the spans' order does not matter, nor does the
order within a span (that order lives only in the encoder's states). Renaming the modalities
(permuting the ids) leaves the prediction unchanged when IntraMRA's per-modality parameters are
permuted alike, and permutes the InterMRA weights. Upstream the encoder is not invariant: its
positional embeddings see the spans' order unless position ids restart at every span, so the
paper fixes the order of modalities (Sec. III-B) instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmsets.data.sequences import SequenceBatch
from mmsets.models.parts import POOLINGS, SetPooling, SetPredictor, TrainedModel, builder, check_dropouts, param_groups
from mmsets.plan.spec import check_numbers


# ---------------------------------------------------------------------------- similarity S (Eq. 7, 8)

class AdditiveSimilarity(nn.Module):
    """S(H_t; W, q) = q^T tanh(W H_t) (Eq. 8; additive attention, Bahdanau et al.), the paper's choice.

    Eq. 8 has no bias and W is d x d; ``attn_dim`` and ``bias`` relax both.
    """

    def __init__(self, dim: int, attn_dim: int | None = None, bias: bool = False):
        super().__init__()
        attn_dim = attn_dim or dim
        self.proj = nn.Linear(dim, attn_dim, bias=bias)
        self.query = nn.Parameter(torch.empty(attn_dim).uniform_(-attn_dim ** -0.5, attn_dim ** -0.5))

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.proj(x)) @ self.query


class DotProductSimilarity(nn.Module):
    """S(H_t; W, q) = q^T W H_t / sqrt(d_a): scaled dot product (Vaswani et al.) with a learned
    query, the variant of the paper's Table 5. A bias would shift every score alike and cancel."""

    def __init__(self, dim: int, attn_dim: int | None = None, bias: bool = False):
        super().__init__()
        attn_dim = attn_dim or dim
        self.proj = nn.Linear(dim, attn_dim, bias=False)
        self.query = nn.Parameter(torch.empty(attn_dim).uniform_(-attn_dim ** -0.5, attn_dim ** -0.5))
        self.scale = attn_dim ** -0.5

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x) @ self.query * self.scale


SIMILARITIES: dict[str, type[nn.Module]] = {"additive": AdditiveSimilarity, "dot": DotProductSimilarity}


@dataclass
class TokenStateConfig:
    """What every family on the token encoder's cached states is given: the data's sizes, rho, psi and
    the encoder's top layers it may fine-tune."""

    hidden_size: int  # d of the encoder: 1024 for RoBERTa-large, 384 for MiniLM-L6
    n_classes: int
    n_modalities: int  # M, fixed per dataset; a missing modality is an empty span
    head_hidden: tuple[int, ...] = (256, 128)  # rho; the paper does not give it, we use DMMS's
    dropout: float = 0.25  # inside rho
    prior: float = 0.01  # pi in the last bias -log((1 - pi) / pi)
    pooling: str = "mean"  # psi: mean (Eq. 5) | max | min | sum, over modality tokens
    finetune_layers: int = 0  # k: the encoder's last k layers trained too, from states cached below them
    finetune_lr: float = 2e-5  # their learning rate (the rest trains at training.lr)
    encoder: dict | None = None  # the token store's encoder: {model, layer, weights} (from the data)

    def __post_init__(self) -> None:
        self.head_hidden = tuple(int(h) for h in self.head_hidden)
        _check_common(self, type(self).__name__)


@dataclass
class DM2S2Config(TokenStateConfig):
    intra: bool = True  # IntraMRA (Sec. III-C2); off: tokens pass unchanged (Table 3)
    inter: bool = True  # InterMRA (Sec. III-C3)
    similarity: str = "additive"  # S: additive (Eq. 8) | dot (Table 5)
    residual: bool = True  # H + a H (Eq. 10, 14); off: a H (Table 6)
    attn_dim: int | None = None  # rows of W; None: d as in the paper (W in R^{d x d})
    attn_bias: bool = False  # a bias inside tanh(W H_t + b); Eq. 8 has none

    def __post_init__(self) -> None:
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"DM2S2Config.similarity: {self.similarity!r} is not one of {sorted(SIMILARITIES)}")
        super().__post_init__()


@dataclass
class EncoderOnlyConfig(TokenStateConfig):
    modality_embedding: bool = True  # the token type ids of the paper's baseline, added after the frozen encoder


def _check_common(config, name: str) -> None:
    if config.pooling not in POOLINGS:
        raise ValueError(f"{name}.pooling: {config.pooling!r} is not one of {sorted(POOLINGS)}")
    check_numbers(config, name, ValueError)
    check_dropouts(config, name)
    if not 0.0 < config.prior < 1.0:
        raise ValueError(f"{name}.prior must lie in (0, 1), got {config.prior}")
    for key in ("hidden_size", "n_classes", "n_modalities"):
        if getattr(config, key) < 1:
            raise ValueError(f"{name}.{key} must be >= 1, got {getattr(config, key)}")
    if config.finetune_layers < 0 or config.finetune_lr <= 0:
        raise ValueError(f"{name}: finetune_layers must be >= 0 and finetune_lr > 0")
    if config.finetune_layers and not (config.encoder or {}).get("model"):
        raise ValueError(f"{name}.finetune_layers: {config.finetune_layers} needs the token store's encoder "
                         f"(its model and layer), got {config.encoder!r}")


# ------------------------------------------------------------------------------------- helpers

def modality_members(modality: Tensor, token_mask: Tensor, n_modalities: int) -> Tensor:
    """(B, T, M) bool: token t belongs to modality m. Specials, padding (-1) belong to none."""
    if modality.numel() and int(modality.max()) >= n_modalities:
        raise ValueError(f"batch has modality id {int(modality.max())}, the model knows {n_modalities} modalities")
    valid = token_mask & (modality >= 0)
    return F.one_hot(modality.clamp(min=0), n_modalities).bool() & valid.unsqueeze(-1)


def masked_softmax(scores: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Softmax over the entries where ``mask`` holds; 0 elsewhere, and 0 (not NaN) where none holds."""
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return scores.softmax(dim=dim) * mask


class NoAttention(nn.Module):
    """A switched-off MRA: tokens pass unchanged and no weights are reported."""

    def forward(self, x: Tensor, members: Tensor) -> tuple[Tensor, None]:
        return x, None


# -------------------------------------------------------------------------------- fine-tuning

class EncoderTop(nn.Module):
    """The token encoder's last k layers, trained with the model: applied to states the tokens extractor
    cached at layer L - k (``layer: -(k + 1)``), they give what the whole encoder would from the token ids
    with its lower L - k layers frozen, without running those again every epoch (DM2S2 fine-tuning)."""

    def __init__(self, encoder: dict, k: int):
        super().__init__()
        import copy

        from mmsets.extract.backbones import load_text_encoder

        model = load_text_encoder(encoder["model"], "cpu", weights=encoder.get("weights", "pretrained")).model
        blocks = getattr(getattr(model, "encoder", None), "layer", None)
        if model.config.model_type not in ("bert", "roberta") or blocks is None:
            raise ValueError(f"finetune_layers: {encoder['model']!r} ({model.config.model_type}) is not a BERT or "
                             f"RoBERTa encoder, whose layers take the cached states alone")
        n_layers = len(blocks)
        stored = encoder["layer"] if encoder["layer"] >= 0 else n_layers + 1 + encoder["layer"]
        if not 0 < k <= n_layers or stored != n_layers - k:
            raise ValueError(f"finetune_layers: {k} of {encoder['model']}'s {n_layers} layers trains from states "
                             f"of layer {n_layers - k} (the tokens extractor's layer: {-(k + 1)}), but the token "
                             f"store holds layer {stored}")
        self.layers = copy.deepcopy(blocks[n_layers - k:]).train()
        self.k = k

    def forward(self, hidden: Tensor, token_mask: Tensor) -> Tensor:
        # An additive mask (B, 1, 1, T): padding gets no attention, as the encoder's own mask does.
        mask = (~token_mask)[:, None, None, :].to(hidden.dtype) * torch.finfo(hidden.dtype).min
        for layer in self.layers:
            out = layer(hidden, attention_mask=mask)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden


def encoder_top(config: TokenStateConfig) -> nn.Module | None:
    return EncoderTop(config.encoder, config.finetune_layers) if config.finetune_layers else None


class TokenStateModel(TrainedModel):
    """A family on the token encoder's cached states H; its ``finetuned`` encoder top (None: the encoder
    stays frozen and the cached states are H) trains at the config's finetune_lr, the rest at the loop's."""

    config: TokenStateConfig
    finetuned: nn.Module | None
    rho: SetPredictor

    def states(self, batch: SequenceBatch) -> Tensor:
        return batch.hidden if self.finetuned is None else self.finetuned(batch.hidden, batch.token_mask)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        return param_groups(self.parameters(), lr, weight_decay, self.finetuned, self.config.finetune_lr)

    @property
    def output_layer(self) -> nn.Linear:
        return self.rho[-1]


# ------------------------------------------------------------------------------------------ MRA

class IntraMRA(nn.Module):
    """Intra-modality residual attention (Sec. III-C2, Eq. 9-11).

    a_t = softmax over modality m's tokens of S(H_t; W^(m), q^(m)) with parameters of its own
    per modality (Eq. 9), then H_t + a_t H_t (Eq. 10), or a_t H_t without the residual. Specials
    and padding get weight 0 and are not rescaled by the attention.
    """

    def __init__(self, n_modalities: int, similarity: Callable[[], nn.Module], residual: bool = True):
        super().__init__()
        self.similarities = nn.ModuleList(similarity() for _ in range(n_modalities))
        self.skip = float(residual)

    def forward(self, x: Tensor, members: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, d), members (B, T, M) -> (H_Intra (B, T, d), a_Intra (B, T))."""
        scores = x.new_zeros(x.shape[:2])
        for m, similarity in enumerate(self.similarities):  # each token is scored by its own modality only
            chosen = members[..., m]
            scores = scores.masked_scatter(chosen, similarity(x[chosen]))
        logits = scores.unsqueeze(-1).expand_as(members)
        weights = masked_softmax(logits, members, dim=1).sum(dim=-1)  # a token is in at most one modality
        return x * (weights + self.skip).unsqueeze(-1), weights

    def extra_repr(self) -> str:
        return f"residual={bool(self.skip)}"


class InterMRA(nn.Module):
    """Inter-modality residual attention (Sec. III-C3, Eq. 12-15).

    H'_m = sum of modality m's IntraMRA outputs (Eq. 12); b_m = softmax over the modalities of
    S(H'_m; W', q') with one shared W', q' (Eq. 13); every token of m becomes H_t + b_m H_t
    (Eq. 14). A modality without tokens takes no part in the softmax: the paper keeps M fixed by
    empty spans (Sec. III-B) but does not say how an empty one is scored; giving it weight 0
    keeps the others' weights those of the modalities actually present.
    """

    def __init__(self, similarity: Callable[[], nn.Module], residual: bool = True):
        super().__init__()
        self.similarity = similarity()
        self.skip = float(residual)

    def forward(self, x: Tensor, members: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, d), members (B, T, M) -> (H_Inter (B, T, d), a_Inter (B, M))."""
        onehot = members.to(x.dtype)
        summary = torch.einsum("btm,btd->bmd", onehot, x)  # H' (Eq. 12)
        weights = masked_softmax(self.similarity(summary), members.any(dim=1), dim=1)
        per_token = torch.einsum("btm,bm->bt", onehot, weights)
        return x * (per_token + self.skip).unsqueeze(-1), weights

    def extra_repr(self) -> str:
        return f"residual={bool(self.skip)}"


# --------------------------------------------------------------------------------------- models

class DM2S2(TokenStateModel):
    """rho(psi(InterMRA(IntraMRA(H)))) over the encoder's states H (Sec. III-B, Eq. 3-6).

    psi pools the modality tokens only: H_Inter has L = sum_m l_m rows (Eq. 4, 5), so [CLS],
    [SEP] and padding reach the prediction only through the encoder's context.
    """

    explain_kind = "inter_attention"  # feature importance: the InterMRA weight of each modality

    def __init__(self, config: DM2S2Config):
        super().__init__()
        self.config = config
        make = SIMILARITIES[config.similarity]

        def similarity() -> nn.Module:
            return make(config.hidden_size, config.attn_dim, config.attn_bias)

        self.finetuned = encoder_top(config)
        self.intra = IntraMRA(config.n_modalities, similarity, config.residual) if config.intra else NoAttention()
        self.inter = InterMRA(similarity, config.residual) if config.inter else NoAttention()
        self.pool = SetPooling(config.pooling)
        # rho as in DMMS (ELU MLP with a prior-initialised last bias), so the two families differ only in phi.
        self.rho = SetPredictor(config.hidden_size, config.head_hidden, config.n_classes, nn.ELU, config.dropout,
                                config.prior)

    def attend(self, batch: SequenceBatch) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """(H_Inter (B, T, d), modality-token mask (B, T), a_Intra (B, T) | None, a_Inter (B, M) | None)."""
        members = modality_members(batch.modality, batch.token_mask, self.config.n_modalities)
        valid = members.any(dim=-1)
        hidden = self.states(batch)
        x = hidden.masked_fill(~valid.unsqueeze(-1), 0.0)  # junk in padding never reaches a sum
        x, intra = self.intra(x, members)
        x, inter = self.inter(x, members)
        return x, valid, intra, inter

    def forward(self, batch: SequenceBatch) -> Tensor:
        x, valid, _, _ = self.attend(batch)
        pooled, _ = self.pool(x, valid)
        return self.rho(pooled)

    @torch.no_grad()
    def attention(self, batch: SequenceBatch) -> dict[str, Tensor]:
        """The MRA weights (Fig. 3): ``intra`` (B, T), each present modality's tokens summing to 1,
        0 on specials and padding; ``inter`` (B, M), summing to 1 over the modalities present, 0
        for an absent one. A switched-off MRA has no entry."""
        _, _, intra, inter = self.attend(batch)
        return {name: w for name, w in (("intra", intra), ("inter", inter)) if w is not None}

    @torch.no_grad()
    def explain(self, batch: SequenceBatch) -> Tensor:
        """Feature importance: the InterMRA weight of each modality (B, M); none without InterMRA."""
        if not self.config.inter:
            raise NotImplementedError("no InterMRA: no per-modality weights")
        return self.attention(batch)["inter"]


class ZeroEmbedding(nn.Module):
    """A switched-off embedding: adds nothing."""

    def forward(self, ids: Tensor) -> float:
        return 0.0


class EncoderOnly(TokenStateModel):
    """The paper's "RoBERTa encoder only" baseline (Sec. V-A, Table 3's first row): the frozen
    encoder's states, token type ids to tell the modalities apart, psi and rho, no MRA.

    The paper feeds the token type ids into the encoder; here the states are computed once
    without them, so a learned modality embedding (one d-vector per modality, BERT's token type
    embedding) is added to each modality token's state instead. Without it the model is
    exactly DM2S2 with ``intra=False, inter=False``.
    """

    def __init__(self, config: EncoderOnlyConfig):
        super().__init__()
        self.config = config
        self.finetuned = encoder_top(config)
        self.token_type = (nn.Embedding(config.n_modalities, config.hidden_size) if config.modality_embedding
                           else ZeroEmbedding())
        if config.modality_embedding:
            nn.init.normal_(self.token_type.weight, std=0.02)  # BERT's initialiser
        self.pool = SetPooling(config.pooling)
        self.rho = SetPredictor(config.hidden_size, config.head_hidden, config.n_classes, nn.ELU, config.dropout,
                                config.prior)

    def forward(self, batch: SequenceBatch) -> Tensor:
        valid = modality_members(batch.modality, batch.token_mask, self.config.n_modalities).any(dim=-1)
        hidden = self.states(batch)
        x = hidden + self.token_type(batch.modality.clamp(min=0))
        pooled, _ = self.pool(x.masked_fill(~valid.unsqueeze(-1), 0.0), valid)
        return self.rho(pooled)


dm2s2 = builder(DM2S2, DM2S2Config)
encoder_only = builder(EncoderOnly, EncoderOnlyConfig)
