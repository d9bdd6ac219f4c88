"""Text-vector extractor, RoBERTa(t) in DMMS: one sentence vector per text field (or per paragraph)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from tqdm.auto import tqdm

from mmsets.data.manifest import Manifest
from mmsets.extract.backbones import POOLINGS, count_truncated, embed_texts, load_text_encoder
from mmsets.extract.common import DTYPES, ParamsError, RunTally, check_choice, is_missing, params_from_dict, \
    resolve_device
from mmsets.store import RaggedWriter

EXTRACTOR = "text"
SEGMENTS = ("none", "paragraph")
CHUNK_ITEMS = 512  # items embedded (length-sorted) and committed together


@dataclass
class TextParams:
    model: str = "minilm-l6"
    fields: list[str] = field(default_factory=lambda: ["plot"])
    pooling: str = "mean"  # "cls" for RoBERTa as in DMMS; sentence-transformers models are trained for "mean"
    max_length: int = 256
    segment: str = "none"  # "paragraph": one element per non-empty line (MM-IMDb plots hold several summaries)
    dtype: str = "float16"

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> "TextParams":
        return params_from_dict(cls, params, where="text params")

    def __post_init__(self) -> None:
        self.fields = list(self.fields)
        if not self.model:
            raise ParamsError("text params.model: must name a model")
        if not self.fields:
            raise ParamsError("text params.fields: name at least one text field")
        if len(set(self.fields)) != len(self.fields):
            raise ParamsError(f"text params.fields: {self.fields} repeats a field")
        check_choice("text params.pooling", self.pooling, POOLINGS)
        check_choice("text params.segment", self.segment, SEGMENTS)
        check_choice("text params.dtype", self.dtype, DTYPES)
        if self.max_length < 2:
            raise ParamsError(f"text params.max_length: {self.max_length} is below 2 tokens")


def segments(value: Any, segment: str) -> list[str]:
    """The texts one field value becomes: none for a missing/blank value, else one, or one per paragraph."""
    if is_missing(value):
        return []
    if not isinstance(value, str):  # a loader that kept a list of summaries
        value = "\n".join(str(v) for v in value) if isinstance(value, (list, tuple, np.ndarray)) else str(value)
    if segment == "paragraph":
        return [p.strip() for p in value.splitlines() if p.strip()]
    return [value.strip()] if value.strip() else []


def extract_text(
    manifest: Manifest,
    out_path: str | os.PathLike,
    params: TextParams,
    device: str = "auto",
    batch_size: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Write one vector per (field, segment) of each item to the ragged store ``out_path``.

    Elements carry their field name in the per-element string field ``field``. A missing or blank
    field gives no element and counts as ``no_text``; an interrupted run resumes.
    """
    unknown = [f for f in params.fields if f not in manifest.text_fields]
    if unknown:
        raise ParamsError(f"text params.fields: {unknown} not in the manifest; it has {manifest.text_fields}")
    device = resolve_device(device)
    encoder = load_text_encoder(params.model, device)
    if encoder.max_length is not None and params.max_length > encoder.max_length:
        raise ParamsError(f"text params.max_length: {params.max_length} is over {params.model}'s {encoder.max_length}")
    writer = RaggedWriter(out_path, extractor=EXTRACTOR, dim=encoder.dim, dtype=params.dtype, model=params.model,
                          params=dataclasses.asdict(params), fields={"field": ((), "str")}, resume=True)
    tally = RunTally(device)
    ids = [str(i) for i in manifest.frame["id"]]
    # elements[i]: (field, text) pairs of item i, in field order then paragraph order
    elements: list[list[tuple[str, str]]] = [[] for _ in ids]
    for name in params.fields:
        for i, value in enumerate(manifest.text(name)):
            parts = segments(value, params.segment)
            if not parts:
                tally.skip(ids[i], "no_text")
            elements[i].extend((name, p) for p in parts)
    done = [t for i, item_id in enumerate(ids) if item_id in writer.done_ids for _, t in elements[i]]
    truncated = count_truncated(encoder, done, params.max_length)
    todo = [i for i, item_id in enumerate(ids) if item_id not in writer.done_ids]
    try:
        with tqdm(total=len(todo), unit="item", desc=f"text {params.model}", disable=not progress) as bar:
            for start in range(0, len(todo), CHUNK_ITEMS):
                chunk = todo[start:start + CHUNK_ITEMS]
                texts = [t for i in chunk for _, t in elements[i]]
                vectors = embed_texts(encoder, texts, params.pooling, params.max_length, batch_size)
                truncated += count_truncated(encoder, texts, params.max_length)
                row = 0
                for i in chunk:
                    k = len(elements[i])
                    writer.add(ids[i], vectors[row:row + k], field=[name for name, _ in elements[i]])
                    row += k
                    tally.processed += 1
                bar.update(len(chunk))
    except BaseException:
        writer.abort()
        raise
    summary = {**tally.summary(writer), "truncated": truncated}
    writer.close(**summary)
    return summary
