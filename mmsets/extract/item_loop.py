"""The loop every extractor runs its items through: inputs made in DataLoader workers, batches processed, each
item's elements written, or the item counted by why it has none; an interrupted run resumes from the committed
items of the partial store.

An item whose input cannot be made (``ImageSkip``: no image, a missing, broken or too large file, ...) is stored
with zero elements and counted by its reason.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mmsets.extract.resume import empty_done_ids, resumable
from mmsets.extract.tally import RunTally
from mmsets.progress import progress
from mmsets.runtime import Runtime, worker_init
from mmsets.store import RaggedWriter


class ImageSkip(Exception):
    """An item that yields no element; ``reason`` is the summary's key."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason, detail)  # both in args, so it pickles back from a DataLoader worker
        self.reason, self.detail = reason, detail

    def __str__(self) -> str:
        return self.detail or self.reason


# A service's refusal of one item (Cloud Vision): a failure, not an empty answer. The item is not stored, so
# the next run asks again, and the store stays partial until every item has an answer.
RETRY_REASONS = frozenset({"quota_exceeded", "permission_denied", "unauthenticated"})


@dataclass
class Elements:
    """What one item gave: ``data`` (k, dim) and per-element ``fields``, or the ``error`` (reason, detail)
    that left it without any: a service failing on this image alone, say (stored empty and listed)."""

    data: np.ndarray
    fields: dict[str, Sequence[Any]] = field(default_factory=dict)
    error: tuple[str, str | None] | None = None


class _Todo(Dataset):
    """The rows still to do: (row, input, None), or (row, None, ImageSkip) instead of a crash."""

    def __init__(self, inputs: Dataset, rows: list[int]) -> None:
        self.inputs, self.rows = inputs, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, j: int) -> tuple[int, Any, ImageSkip | None]:
        i = self.rows[j]
        try:
            return i, self.inputs[i], None
        except ImageSkip as skip:
            return i, None, skip


def _collate(batch: list[tuple[int, Any, ImageSkip | None]], stack: bool):
    rows = [i for i, _, _ in batch]
    inputs = [x for _, x, skip in batch if skip is None]
    skips = {i: skip for i, _, skip in batch if skip is not None}
    return rows, (torch.stack(inputs) if stack and inputs else inputs), skips


def retry_input(inputs: Dataset, empty_reason: str | None, i: int) -> tuple[str | None, str | None]:
    """Why row i has no elements, as far as its input tells: its ImageSkip, else ``empty_reason``."""
    try:
        inputs[i]
    except ImageSkip as skip:
        return skip.reason, skip.detail
    return empty_reason, None


def run_items(
    ids: list[str],
    inputs: Dataset,
    writer: RaggedWriter,
    tally: RunTally,
    process: Callable[[Any], list[Elements]],
    runtime: Runtime,
    *,
    desc: str,
    empty_reason: str | None = None,
    why_empty: Callable[[int], tuple[str | None, str | None]] | None = None,
    unit: str = "img",
    stack: bool = False,
    pin_memory: bool = False,
) -> None:
    """Write ``process``'s elements for every item of ``ids`` not yet in ``writer``.

    ``inputs[i]`` makes row i's input in one of ``runtime.num_workers`` workers; ``process`` turns a
    batch of ``runtime.batch_size`` of them (a list, or one tensor with ``stack``) into one Elements
    each. An item with zero elements and no error is counted as ``empty_reason`` (when given). A
    resumed item without elements is counted again, by ``why_empty(row)``, by default ``retry_input``
    (so an item a service failed on counts as empty then).
    """
    why_empty = why_empty or functools.partial(retry_input, inputs, empty_reason)
    index = {item_id: i for i, item_id in enumerate(ids)}
    for item_id in empty_done_ids(writer) & index.keys():
        reason, detail = why_empty(index[item_id])
        if reason is not None:
            tally.skip(item_id, reason, detail)
    todo = [i for i, item_id in enumerate(ids) if item_id not in writer.done_ids]
    loader = DataLoader(_Todo(inputs, todo), batch_size=runtime.batch_size, num_workers=runtime.num_workers,
                        collate_fn=functools.partial(_collate, stack=stack), pin_memory=pin_memory,
                        worker_init_fn=worker_init)
    nothing = {name: np.zeros((0, *tail)) for name, (tail, _) in writer.fields.items()}
    with resumable(writer), progress(len(todo), desc, unit, enabled=runtime.progress) as bar:
        for rows, batch, skips in loader:
            results = iter(process(batch) if len(batch) else ())
            for i in rows:
                out = None if i in skips else next(results)
                error = (skips[i].reason, skips[i].detail) if out is None else out.error
                if error is not None and out is not None and error[0] in RETRY_REASONS:
                    tally.fail(ids[i], *error)  # not stored: the next run asks again
                elif error is not None:
                    tally.skip(ids[i], *error)
                    writer.add(ids[i], np.zeros((0, writer.dim), np.float32), **nothing)
                else:
                    if not len(out.data) and empty_reason is not None:
                        tally.skip(ids[i], empty_reason)
                    writer.add(ids[i], out.data, **out.fields)
                tally.processed += 1
            bar.update(len(rows))
