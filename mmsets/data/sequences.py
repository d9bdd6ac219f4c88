"""Sets of sequences: the input of DM2S2 (Kitada et al., Sec. III-B, Eq. 2).

Every modality of an item is a token sequence; one encoder reads them all at once as
``[CLS] m1 [SEP] m2 [SEP] ... mM [SEP]`` (a missing modality is an empty span, so the M spans
keep a fixed order). The frozen encoder's hidden states are stored ragged by token
(``mmsets.store``): one row per token, ``dim`` = hidden size, and a per-token int field
``modality`` giving the token's modality index, -1 for the specials. The store's attribute
``modalities`` (a JSON list of names) names those indices.

``build_segments`` makes the encoder input (used by the token extractor); ``SequenceDataset``
and ``collate_sequences`` read the stored states back and pad them into a ``SequenceBatch``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmsets.data.manifest import Manifest
from mmsets.data.sets import multi_hot
from mmsets.store import PRELOAD_BYTES, CheckedRows, RaggedStore, StoreReader, store_modalities

log = logging.getLogger(__name__)

SPECIAL = -1  # modality id of [CLS], [SEP] and padding


# ------------------------------------------------------------------------------- encoder input

def allocate_budget(lengths: Sequence[int], total: int, caps: Sequence[int | None] | None = None) -> list[int]:
    """Tokens each modality keeps so that they sum to at most ``total``.

    Each modality first gets at most its own cap (``None``: no cap of its own). If they still do
    not fit, the ``total`` is split equally, and a modality shorter than its share passes what it
    does not use on to the others (water-filling): a two-word title does not waste half of the
    encoder's window, and no modality is cut while another keeps more than its equal share.
    """
    caps = [None] * len(lengths) if caps is None else list(caps)
    if len(caps) != len(lengths):
        raise ValueError(f"budgets: got {len(caps)} for {len(lengths)} modalities")
    if total < 0:
        raise ValueError(f"token budget must be >= 0, got {total}")
    want = [max(0, int(n)) if cap is None else max(0, min(int(n), int(cap))) for n, cap in zip(lengths, caps)]
    keep = [0] * len(want)
    left = total
    # Visit the shortest first: each takes all it wants or an equal share of what is left.
    order = sorted(range(len(want)), key=lambda m: want[m])
    for rank, m in enumerate(order):
        share = left // (len(order) - rank)
        keep[m] = min(want[m], share)
        left -= keep[m]
    return keep


def build_segments(tokenizer: Any, texts: Sequence[str | None], max_length: int,
                   budgets: Sequence[int | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``[CLS] m1 [SEP] m2 [SEP] ... mM [SEP]`` (Eq. 2) within the encoder's ``max_length``.

    ``texts[m]`` is modality m's text (None or blank: an empty span, the modality is missing).
    Each modality is tokenized on its own and cut from the end to the tokens that
    :func:`allocate_budget` grants it out of ``max_length - (M + 1)`` (the specials always fit):
    ``budgets[m]`` caps modality m, ``None`` or ``budgets=None`` splits equally.

    Returns ``(input_ids, modality)``: two int64 arrays of the same length, ``modality`` holding
    each token's modality index and -1 for [CLS] and [SEP].
    """
    n = len(texts)
    content = max_length - (n + 1)
    if content < 0:
        raise ValueError(f"max_length {max_length} cannot hold the {n + 1} special tokens of {n} modalities")
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None or sep_id is None:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has no CLS/SEP token")
    pieces = [tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"] if text and text.strip() else []
              for text in texts]
    keep = allocate_budget([len(p) for p in pieces], content, budgets)
    input_ids, modality = [cls_id], [SPECIAL]
    for m, (piece, k) in enumerate(zip(pieces, keep)):
        input_ids += list(piece[:k]) + [sep_id]
        modality += [m] * k + [SPECIAL]
    return np.asarray(input_ids, np.int64), np.asarray(modality, np.int64)


# ---------------------------------------------------------------------------------- examples

@dataclass
class SequenceExample:
    id: str
    hidden: np.ndarray  # (T, H) float32; T = 0 when the store lacks the item
    modality: np.ndarray  # (T,) int64, -1 for the specials
    labels: np.ndarray  # (C,) float32 multi-hot


@dataclass
class SequenceBatch:
    """Padded sequences; ``token_mask`` is True for every real token (specials included) and
    ``modality`` is -1 for specials and padding, so modality tokens are ``modality >= 0``."""

    hidden: Tensor  # (B, T, H) float32
    token_mask: Tensor  # (B, T) bool
    modality: Tensor  # (B, T) long
    labels: Tensor  # (B, C) float32
    ids: list[str]

    def to(self, device: torch.device | str) -> "SequenceBatch":
        return SequenceBatch(*(t.to(device, non_blocking=True) for t in
                               (self.hidden, self.token_mask, self.modality, self.labels)), self.ids)

    def __len__(self) -> int:
        return len(self.ids)


def collate_sequences(items: Sequence[SequenceExample]) -> SequenceBatch:
    """Pad to the batch's longest sequence (at least one position, masked when unused)."""
    t_max = max(1, max(len(item.hidden) for item in items))
    dim = items[0].hidden.shape[1]
    hidden = np.zeros((len(items), t_max, dim), np.float32)
    mask = np.zeros((len(items), t_max), bool)
    modality = np.full((len(items), t_max), SPECIAL, np.int64)
    for b, item in enumerate(items):
        t = len(item.hidden)
        hidden[b, :t] = item.hidden
        mask[b, :t] = True
        modality[b, :t] = item.modality
    labels = np.stack([item.labels for item in items]).astype(np.float32)
    return SequenceBatch(torch.from_numpy(hidden), torch.from_numpy(mask), torch.from_numpy(modality),
                         torch.from_numpy(labels), [item.id for item in items])


class SequenceDataset(Dataset):
    """The items of one split: per-token hidden states, modality ids and multi-hot labels.

    ``modalities`` names the modality indices the model sees, in order. When the store records
    its own names, ``modalities`` may pick a subset or reorder them: tokens of a modality left
    out are dropped (the "erased modality" of the paper's Fig. 2, though the encoder still saw
    it), the others are renumbered. Without names in the store, ``modalities[i]`` names index i.
    A name in ``erased`` may be missing from the store: one re-encoded without that modality (the
    paper's erasure proper, ``mmsets.runs.erasure``); the model then sees no token of it.

    An item the store lacks has no tokens (T = 0); it is kept and counted in ``missing``.
    States are read into memory (as stored, float16) when they are small enough
    (``preload=None``), else read per item from the file, which each DataLoader worker opens
    for itself.
    """

    collate = staticmethod(collate_sequences)

    def __init__(
        self,
        manifest: Manifest,
        store: RaggedStore | str | os.PathLike,
        split: str | None,
        label_names: Sequence[str] | None = None,
        modalities: Sequence[str] | None = None,
        *,
        preload: bool | None = None,
        erased: Sequence[str] = (),
    ) -> None:
        own = not isinstance(store, RaggedStore)
        store = RaggedStore(store) if own else store
        try:
            self._init(manifest, store, split, label_names, modalities, preload, tuple(erased))
        finally:
            if own:
                store.close()

    def _init(self, manifest, store, split, label_names, modalities, preload, erased) -> None:
        if "modality" not in store.fields:
            raise ValueError(f"{store.path}: token store lacks the per-token field 'modality'")
        frame = manifest.frame if split is None else manifest.split(split)
        self.split = split
        self.path = Path(store.path)
        self.hidden_size = store.dim
        # The encoder and the layer the states come from: a model that fine-tunes the layers above needs both.
        self.encoder = {"model": str(store.attrs.get("model", "")), "layer": int(store.attrs.get("layer", -1)),
                        "weights": str(store.params.get("weights", "pretrained"))}
        self.label_names = list(label_names if label_names is not None else manifest.label_names)
        self.ids = [str(i) for i in frame["id"]]
        self.labels = np.stack(
            [multi_hot(labels, self.label_names, item_id) for item_id, labels in zip(self.ids, frame["labels"])]
        ) if self.ids else np.zeros((0, len(self.label_names)), np.float32)

        stored = store_modalities(store)
        if modalities is None:
            if stored is None:
                raise ValueError(f"{store.path}: store has no 'modalities' attribute; pass modalities=[names]")
            modalities = stored
        self.modalities = [str(m) for m in modalities]
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities: duplicate names in {self.modalities}")
        if stored is None:
            remap = np.arange(len(self.modalities))
        else:
            unknown = [m for m in self.modalities if m not in stored and m not in erased]
            if unknown:
                raise ValueError(f"modalities: {unknown} are not in store {store.path} (it has {stored})")
            remap = np.array([self.modalities.index(m) if m in self.modalities else -2 for m in stored])

        self.missing = [i for i in self.ids if i not in store]
        if self.missing:
            log.warning("%s: %d of %d %s items have no tokens in the store (e.g. %r)", store.path, len(self.missing),
                        len(self.ids), split, self.missing[0])
        # one byte or two per token: read at once; a damaged chunk fails naming the store
        all_ids = CheckedRows(store.path, "modality", store.file["modality"])[:].astype(np.int64)
        self._rows: list[slice | None] = []  # store rows of each item's tokens
        self._keep: list[np.ndarray | None] = []  # the rows kept within the item, None = all
        self.modality: list[np.ndarray] = []
        for item_id in self.ids:
            if item_id not in store:
                self._rows.append(None)
                self._keep.append(None)
                self.modality.append(np.zeros(0, np.int64))
                continue
            k = store.index[item_id]
            rows = slice(int(store.offsets[k]), int(store.offsets[k + 1]))
            ids = all_ids[rows]
            if len(ids) and ids.max() >= len(remap):
                raise ValueError(f"item {item_id!r}: modality id {ids.max()} but only {len(remap)} modalities named")
            mapped = np.where(ids >= 0, remap[np.maximum(ids, 0)], SPECIAL)
            keep = mapped != -2
            self._rows.append(rows)
            self._keep.append(None if keep.all() else np.flatnonzero(keep))
            self.modality.append(mapped[keep])

        n_bytes = sum(len(m) for m in self.modality) * store.dim * store.file["data"].dtype.itemsize
        self.preloaded = n_bytes <= PRELOAD_BYTES if preload is None else preload
        self._hidden: list[np.ndarray] | None = None
        if self.preloaded:
            data = CheckedRows(store.path, "data", store.file["data"])  # a damaged chunk names its item
            self._hidden = [self._select(data, i) for i in range(len(self.ids))]
        self._reader = StoreReader(self.path)

    def _select(self, data: CheckedRows | h5py.Dataset, i: int) -> np.ndarray:
        rows, keep = self._rows[i], self._keep[i]
        if rows is None:
            return np.zeros((0, self.hidden_size), data.dtype)
        values = data[rows]
        if not np.isfinite(values).all():
            raise ValueError(f"{self.path}: item {self.ids[i]!r} holds non-finite token states (NaN or inf): "
                             f"extract it again")
        return values if keep is None else values[keep]

    @property
    def n_modalities(self) -> int:
        return len(self.modalities)

    def token_counts(self) -> np.ndarray:
        """(N, M): number of tokens of each modality per item."""
        counts = np.zeros((len(self.ids), self.n_modalities), np.int64)
        for i, ids in enumerate(self.modality):
            counts[i] = np.bincount(ids[ids >= 0], minlength=self.n_modalities)
        return counts

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> SequenceExample:
        hidden = self._hidden[i] if self._hidden is not None else self._select(self._reader.data, i)
        return SequenceExample(self.ids[i], hidden.astype(np.float32), self.modality[i], self.labels[i])
