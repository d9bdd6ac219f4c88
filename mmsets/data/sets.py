"""Multimodal sets: each item is a bag of elements from several modalities (DMMS paper, Sec. 3.3).

An item may have 0, 1 or many elements of each modality (no face, one poster, ten object boxes).
``SetDataset`` holds them as ragged arrays read from the feature stores; ``collate_sets`` pads
them into one ``(B, S_max, D_in)`` tensor per modality plus a mask, so set operations can ignore
the padding exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmsets.data.manifest import Manifest
from mmsets.store import RaggedStore


@dataclass
class SetExample:
    id: str
    modalities: dict[str, np.ndarray]  # name -> (k, dim) float32, k may be 0
    labels: np.ndarray  # (C,) float32 multi-hot


@dataclass
class SetBatch:
    """Padded sets: ``modalities[name] = (x (B, S_max, D_in), mask (B, S_max))``; True = real element."""

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


class SetDataset(Dataset):
    """The items of one split, every modality's elements loaded into memory once.

    ``stores`` maps a modality name to its ragged store. An item the store lacks, or for which it
    holds 0 elements, simply has no elements of that modality.
    """

    def __init__(
        self,
        manifest: Manifest,
        stores: Mapping[str, RaggedStore],
        split: str | None,
        label_names: Sequence[str] | None = None,
    ) -> None:
        frame = manifest.frame if split is None else manifest.split(split)
        self.split = split
        self.label_names = list(label_names if label_names is not None else manifest.label_names)
        self.ids = [str(i) for i in frame["id"]]
        self.input_dims = {name: store.dim for name, store in stores.items()}
        self.labels = np.stack(
            [multi_hot(labels, self.label_names, item_id) for item_id, labels in zip(self.ids, frame["labels"])]
        ) if self.ids else np.zeros((0, len(self.label_names)), np.float32)
        self.elements = {name: self._load(store) for name, store in stores.items()}

    def _load(self, store: RaggedStore) -> list[np.ndarray]:
        present = [i for i in self.ids if i in store]
        arrays = dict(zip(present, store.get(present)))
        empty = np.zeros((0, store.dim), np.float32)
        return [arrays[i].astype(np.float32, copy=False) if i in arrays else empty for i in self.ids]

    @property
    def modalities(self) -> list[str]:
        return list(self.elements)

    def counts(self, name: str) -> np.ndarray:
        """Number of elements of modality ``name`` per item."""
        return np.array([len(x) for x in self.elements[name]], np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> SetExample:
        return SetExample(self.ids[i], {name: arrays[i] for name, arrays in self.elements.items()}, self.labels[i])


def collate_sets(items: Sequence[SetExample]) -> SetBatch:
    """Pad every modality to the batch's largest set (at least 1 row, masked when unused)."""
    modalities = {}
    for name in items[0].modalities:
        sets = [item.modalities[name] for item in items]
        s_max = max(1, max(len(s) for s in sets))
        x = np.zeros((len(items), s_max, sets[0].shape[1]), np.float32)
        mask = np.zeros((len(items), s_max), bool)
        for b, s in enumerate(sets):
            x[b, : len(s)] = s
            mask[b, : len(s)] = True
        modalities[name] = (torch.from_numpy(x), torch.from_numpy(mask))
    labels = torch.from_numpy(np.stack([item.labels for item in items]).astype(np.float32))
    return SetBatch(modalities, labels, [item.id for item in items])
