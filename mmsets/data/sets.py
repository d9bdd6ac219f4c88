"""Multimodal sets: each item is a bag of elements from several modalities (DMMS paper, Sec. 3.3).

An item may have 0, 1 or many elements of each modality (no face, one poster, ten object boxes).
``SetDataset`` holds them as ragged arrays read from the feature stores; its ``collate`` (``collate_sets``) pads
them into one ``(B, S_max, D_in)`` tensor per modality plus a mask, so set operations can ignore
the padding exactly.

A store whose attrs say ``kind="index"`` (objects' COCO ids, categorical metadata) is an *index
modality*: its elements are integer ids for a lookup table (DMMS Sec. 4.2, "Index Embeddings"),
kept as int64 ``(k,)`` and padded to ``(B, S_max)``; its ``input_dims`` entry is the table size
(attrs ``num_embeddings``). Float elements stay in the store's dtype (float16 halves the memory of
a dataset) and become float32 only in the padded batch.

A split's elements are read into memory once when they fit the budget (``mmsets.store.PRELOAD_BYTES``),
else each item is read from the stores when it is asked for (``preload=False``): memory then stays flat
however many items there are, and the items, their order and the results are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence, overload

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmsets.data.manifest import Manifest
from mmsets.listing import listed
from mmsets.store import PRELOAD_BYTES, RaggedStore, StoreReader

FLOAT, INDEX = "float", "index"
KINDS = (FLOAT, INDEX)


@dataclass
class SetExample:
    id: str
    modalities: dict[str, np.ndarray]  # name -> (k, dim) float16/32, or (k,) int64 ids; k may be 0
    labels: np.ndarray  # (C,) float32 multi-hot


@dataclass
class SetBatch:
    """Padded sets: ``modalities[name] = (x, mask (B, S_max))``, True = real element; ``x`` is
    (B, S_max, D_in) float32, or (B, S_max) int64 ids for an index modality (padding id 0)."""

    modalities: dict[str, tuple[Tensor, Tensor]]
    labels: Tensor  # (B, C) float32
    ids: list[str]

    def to(self, device: torch.device | str) -> "SetBatch":
        return SetBatch(
            {name: (x.to(device, non_blocking=True), m.to(device, non_blocking=True))
             for name, (x, m) in self.modalities.items()},
            self.labels.to(device, non_blocking=True),
            self.ids,
        )

    def __len__(self) -> int:
        return len(self.ids)


def multi_hot(labels: Sequence[str], label_names: Sequence[str], item_id: str = "?") -> np.ndarray:
    index = {name: k for k, name in enumerate(label_names)}
    vec = np.zeros(len(label_names), np.float32)
    for label in labels:
        if label not in index:
            raise ValueError(f"item {item_id!r}: label {label!r} is not one of the manifest's label names")
        vec[index[label]] = 1.0
    return vec


def collate_sets(items: Sequence[SetExample]) -> SetBatch:
    """Pad every modality to the batch's largest set (at least 1 row, masked when unused); floats become float32."""
    modalities = {}
    for name in items[0].modalities:
        sets = [item.modalities[name] for item in items]
        s_max = max(1, max(len(s) for s in sets))
        if sets[0].ndim == 1:  # ids of an index modality
            x = np.zeros((len(items), s_max), np.int64)
        else:
            x = np.zeros((len(items), s_max, sets[0].shape[1]), np.float32)
        mask = np.zeros((len(items), s_max), bool)
        for b, s in enumerate(sets):
            x[b, : len(s)] = s
            mask[b, : len(s)] = True
        modalities[name] = (torch.from_numpy(x), torch.from_numpy(mask))
    labels = torch.from_numpy(np.stack([item.labels for item in items]).astype(np.float32))
    return SetBatch(modalities, labels, [item.id for item in items])


class SetDataset(Dataset):
    """The items of one split, every modality's elements loaded into memory once.

    ``stores`` maps a modality name to its ragged store. An item the store lacks, or for which it
    holds 0 elements, simply has no elements of that modality. A modality named in ``dropped`` has no
    elements in any item, exactly as read for an item the store lacks (the items without it, for
    scoring a run's robustness to a missing modality, ``mmsets.runs.robustness``).
    """

    collate = staticmethod(collate_sets)

    def __init__(
        self,
        manifest: Manifest,
        stores: Mapping[str, RaggedStore],
        split: str | None,
        label_names: Sequence[str] | None = None,
        *,
        preload: bool | None = None,
        dropped: Sequence[str] = (),
    ) -> None:
        unknown = sorted(set(dropped) - set(stores))
        if unknown:
            raise ValueError(f"dropped modalities {unknown} are not among the stores {listed(sorted(stores))}")
        frame = manifest.frame if split is None else manifest.split(split)
        self.split = split
        self.label_names = list(label_names if label_names is not None else manifest.label_names)
        self.ids = [str(i) for i in frame["id"]]
        self.input_kinds = {name: store_kind(store) for name, store in stores.items()}
        self.input_dims = {name: int(store.attrs["num_embeddings"]) if self.input_kinds[name] == INDEX else store.dim
                           for name, store in stores.items()}
        self.labels = np.stack(
            [multi_hot(labels, self.label_names, item_id) for item_id, labels in zip(self.ids, frame["labels"])]
        ) if self.ids else np.zeros((0, len(self.label_names)), np.float32)
        columns = {name: StoreColumn(store, self.ids, self.input_kinds[name], self.input_dims[name],
                                     dropped=name in dropped)
                   for name, store in stores.items()}
        n_bytes = sum(column.n_bytes for column in columns.values())
        self.preloaded = n_bytes <= PRELOAD_BYTES if preload is None else preload
        self.elements: dict[str, Sequence[np.ndarray]] = {
            name: column.read_all(store) if self.preloaded else column for (name, column), store
            in zip(columns.items(), stores.values())}
        self._counts = {name: column.counts for name, column in columns.items()}

    @property
    def modalities(self) -> list[str]:
        return list(self.elements)

    def counts(self, name: str) -> np.ndarray:
        """Number of elements of modality ``name`` per item."""
        return self._counts[name]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> SetExample:
        return SetExample(self.ids[i], {name: arrays[i] for name, arrays in self.elements.items()}, self.labels[i])


class StoreColumn(Sequence[np.ndarray]):
    """One modality's elements of the dataset's items, read from its store item by item (``[i]``) or all at
    once (``read_all``); an item the store lacks has none, and with ``dropped`` no item has any. Float rows
    keep the store's dtype, an index store's rows become int64 ids."""

    def __init__(self, store: RaggedStore, ids: Sequence[str], kind: str, dim: int, dropped: bool = False) -> None:
        self.kind, self.dim, self.path = kind, dim, store.path
        self.rows = [None if dropped or i not in store else store.rows(i) for i in ids]
        self.ids = list(ids)
        self.counts = np.array([0 if r is None else r.stop - r.start for r in self.rows], np.int64)
        stored = store.file["data"].dtype
        self.dtype = stored if stored in (np.float16, np.float32) else np.dtype(np.float32)
        self.n_bytes = int(self.counts.sum()) * store.dim * stored.itemsize
        self._reader = StoreReader(store.path)

    def _convert(self, x: np.ndarray, item_id: str) -> np.ndarray:
        if self.kind == INDEX:
            return _ids(x, self.dim, self.path, item_id)
        if not np.isfinite(x).all():
            raise ValueError(f"{self.path}: item {item_id!r} holds non-finite values (NaN or inf): extract it again")
        return x.astype(self.dtype, copy=False)

    def _empty(self) -> np.ndarray:
        return np.zeros(0, np.int64) if self.kind == INDEX else np.zeros((0, self.dim), self.dtype)

    def read_all(self, store: RaggedStore) -> list[np.ndarray]:
        present = [i for i, rows in zip(self.ids, self.rows) if rows is not None]
        arrays = {i: self._convert(x, i) for i, x in zip(present, store.get(present))}
        return [arrays.get(i, self._empty()) for i in self.ids]

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, i: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, i: slice) -> list[np.ndarray]: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        rows = self.rows[i]
        return self._empty() if rows is None else self._convert(self._reader.data[rows], self.ids[i])


def store_kind(store: RaggedStore) -> str:
    """'index' for a store of lookup-table ids (attrs kind and num_embeddings), else 'float'."""
    kind = str(store.attrs.get("kind", FLOAT))
    if kind not in KINDS:
        raise ValueError(f"{store.path}: attrs kind {kind!r} is not one of {KINDS}")
    if kind == INDEX and "num_embeddings" not in store.attrs:
        raise ValueError(f"{store.path}: an index store needs attrs num_embeddings")
    return kind


def _ids(x: np.ndarray, num_embeddings: int, path: object, item_id: str) -> np.ndarray:
    """An index store's (k, 1) float rows as (k,) int64 ids, checked against the table size."""
    ids = np.rint(x[:, 0]).astype(np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= num_embeddings):
        raise ValueError(f"{path}: item {item_id!r} has ids outside [0, {num_embeddings})")
    return ids
