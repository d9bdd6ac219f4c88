"""Categorical-metadata extractor, IE(nat) / IE(con) in DMMS: one index per categorical field.

The paper (Sec. 4.2, "Index Embeddings") maps discrete labels such as Ads-Parallelity's image
naturalness and text concreteness to rows of a learned lookup table. Each field gets a vocabulary
built from the TRAIN split only (so dev/test values never leak into it), sorted, with its own
unknown entry first: a missing value, a value never seen in train, or one seen fewer than
``min_count`` times maps to that field's unknown index. Fields are offset into one global range so
a single embedding table (``IndexEncoder``) covers them all:

    global index = offset[field] + (0 for unknown, 1 + position in the field's sorted values)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from mmsets.data.manifest import CAT_PREFIX, Manifest, is_missing
from mmsets.extract.params import check_names
from mmsets.extract.resume import resumable
from mmsets.extract.tally import RunTally
from mmsets.plan.errors import ParamsError
from mmsets.progress import progress
from mmsets.runtime import Runtime
from mmsets.store import RaggedWriter

EXTRACTOR = "categorical"
UNKNOWN = "<unk>"
FIELDS = {"field": ((), "str"), "value": ((), "str")}


@dataclass
class CategoricalParams:
    fields: list[str] | None = None  # the manifest's cat_<field> columns to use; None: all of them
    min_count: int = 1  # a value seen fewer times in train maps to the unknown index
    # A vocabulary given, {field: entries, unknown first}, instead of one built from train: new items
    # (mmsets predict) get the indices of the store the model was trained on
    vocab: dict[str, list[str]] | None = None

    def __post_init__(self) -> None:
        if self.vocab is not None:
            bad = [f for f, entries in self.vocab.items() if not entries or entries[0] != UNKNOWN]
            if bad:
                raise ParamsError(f"categorical params.vocab: field {bad[0]!r} must list {UNKNOWN!r} first")
            if self.fields is None:
                self.fields = list(self.vocab)
        if self.fields is not None:
            self.fields = list(self.fields)
            check_names("categorical params.fields", self.fields, "name at least one field, or leave it out for all",
                        "field")
        if self.min_count < 1:
            raise ParamsError(f"categorical params.min_count: {self.min_count} is below 1")


def token(value: Any) -> str | None:
    """A value's vocabulary entry, or None when missing; 3, 3.0 and "3" are one entry."""
    if is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value).strip()


def _order(entry: str) -> tuple:
    """Numbers in numeric order (2 before 10), then text; the order of a rating scale is kept."""
    try:
        return (0, float(entry), entry)
    except ValueError:
        return (1, 0.0, entry)


@dataclass
class Vocabulary:
    """Per-field sorted values; ``entries[f][0]`` is the unknown entry of field f."""

    entries: dict[str, list[str]]

    def __post_init__(self) -> None:
        self.offsets: dict[str, int] = {}
        self._index: dict[str, dict[str, int]] = {}
        start = 0
        for name, entries in self.entries.items():
            self.offsets[name] = start
            self._index[name] = {entry: start + i for i, entry in enumerate(entries) if i > 0}
            start += len(entries)
        self.num_embeddings = start

    @classmethod
    def build(cls, columns: Mapping[str, Iterable[Any]], min_count: int = 1) -> "Vocabulary":
        entries = {}
        for name, values in columns.items():
            counts = Counter(t for t in map(token, values) if t is not None and t != UNKNOWN)
            entries[name] = [UNKNOWN, *sorted((t for t, n in counts.items() if n >= min_count), key=_order)]
        return cls(entries)

    def lookup(self, name: str, value: Any) -> tuple[int, str]:
        """(global index, why it is the unknown index: '' when known, else 'missing' or 'unseen')."""
        entry = token(value)
        if entry is None:
            return self.offsets[name], "missing"
        index = self._index[name].get(entry)
        return (self.offsets[name], "unseen") if index is None else (index, "")


def extract_categorical(manifest: Manifest, out_path: str | os.PathLike, params: CategoricalParams,
                        runtime: Runtime | None = None) -> dict[str, Any]:
    """Write one element per (item, field): data (1, 1) = the value's global index, as float32.

    Store attrs: kind 'index', num_embeddings, vocab (JSON: field -> entries, unknown first) and
    offsets (JSON: field -> global index of its unknown entry). Per-element fields ``field`` and
    ``value`` (the raw value as text, '' when missing). A missing or unseen value is not dropped:
    it becomes the field's unknown index and is counted in the summary's ``unknown``. Of ``runtime``
    only ``progress`` matters: there is no model to run.
    """
    runtime = runtime or Runtime()
    available = manifest.categorical_fields
    fields = available if params.fields is None else params.fields
    if not fields:
        raise ParamsError("categorical: the manifest has no cat_<field> column")
    unknown_fields = [f for f in fields if f not in available]
    if unknown_fields:
        raise ParamsError(f"categorical params.fields: {unknown_fields} not in the manifest; it has {available}")
    frame = manifest.frame
    if params.vocab is not None:
        lacking = [f for f in fields if f not in params.vocab]
        if lacking:
            raise ParamsError(f"categorical params.vocab: no entries for field(s) {lacking}")
        vocab = Vocabulary({f: list(params.vocab[f]) for f in fields})
    else:
        train = frame[frame["split"] == "train"]
        if train.empty:
            raise ParamsError("categorical: the manifest has no train items to build the vocabulary from")
        vocab = Vocabulary.build({f: train[CAT_PREFIX + f] for f in fields}, params.min_count)
    writer = RaggedWriter(out_path, extractor=EXTRACTOR, dim=1, dtype="float32", model="vocabulary",
                          params=dataclasses.asdict(params), fields=FIELDS, resume=False,
                          attrs={"kind": "index", "num_embeddings": vocab.num_embeddings, "vocab": vocab.entries,
                                 "offsets": vocab.offsets})
    tally = RunTally("cpu")
    unknown = {f: Counter() for f in fields}
    columns = [frame[CAT_PREFIX + f].tolist() for f in fields]
    with resumable(writer), progress(len(frame), "categorical", enabled=runtime.progress) as bar:
        for n, item_id in enumerate(frame["id"]):
            bar.update()
            index, values = [], []
            for f, column in zip(fields, columns):
                i, why = vocab.lookup(f, column[n])
                if why:
                    unknown[f][why] += 1
                index.append(i)
                values.append(token(column[n]) or "")
            writer.add(str(item_id), np.asarray(index, np.float32)[:, None], field=fields, value=values)
            tally.processed += 1
    return tally.finish(writer, num_embeddings=vocab.num_embeddings,
                        unknown={f: dict(sorted(c.items())) for f, c in unknown.items()})


def training_vocabulary(store_attrs: Mapping[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The params that give new items (``mmsets predict``) the indices of a store with ``store_attrs``: its
    vocabulary, fitted on the training items, and its fields."""
    vocab = store_attrs["vocab"]
    vocab = json.loads(vocab) if isinstance(vocab, str) else vocab
    return {**params, "vocab": vocab, "fields": list(vocab)}
