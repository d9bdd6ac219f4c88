"""Text-vector extractors: one sentence vector per text field or paragraph (RoBERTa(t) in DMMS), or per
item from the words the ocr extractor read on its image (RoBERTa(ocr)). Both go through ``embed_elements``."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from mmsets.data.manifest import Manifest, is_missing
from mmsets.extract.backbones import POOLINGS, count_truncated, embed_texts, load_text_encoder
from mmsets.extract.fingerprints import item_inputs
from mmsets.extract.params import DTYPES, WEIGHTS, check_choice, check_max_elements, check_names, cut_to
from mmsets.extract.resume import resumable
from mmsets.extract.tally import RunTally
from mmsets.plan.errors import ParamsError
from mmsets.progress import progress
from mmsets.runtime import Runtime, resolve_device
from mmsets.store import RaggedStore, RaggedWriter

EXTRACTOR = "text"
OCR_EXTRACTOR = "ocr_text"
SEGMENTS = ("none", "paragraph")
CHUNK_ITEMS = 512  # items embedded (length-sorted) and committed together
# Elements kept per item when max_elements is not set: MM-IMDb plots hold a few summaries, never a hundred
DEFAULT_MAX_ELEMENTS = 128
CUT_KEY = "cut_to_max_elements"  # the summary's count of items that had more elements than the cap


@dataclass
class TextParams:
    model: str = "minilm-l6"
    fields: list[str] = field(default_factory=lambda: ["plot"])
    pooling: str = "mean"  # "cls" for RoBERTa as in DMMS; sentence-transformers models are trained for "mean"
    max_length: int = 256
    segment: str = "paragraph"  # one element per non-empty line (MM-IMDb plots hold several summaries); "none": a field
    dtype: str = "float16"
    weights: str = "pretrained"  # "random": the same architecture, seeded random weights (rehearsals, tests)
    # Elements kept per item, the first ones (field order, then paragraph order); None: DEFAULT_MAX_ELEMENTS.
    # None stays out of the rule params, so stores made before the cap are not made again.
    max_elements: int | None = None

    def __post_init__(self) -> None:
        self.fields = list(self.fields)
        if not self.model:
            raise ParamsError("text params.model: must name a model")
        check_names("text params.fields", self.fields, "name at least one text field", "field")
        check_choice("text params.segment", self.segment, SEGMENTS)
        check_max_elements("text params", self.max_elements)
        check_encoder_params("text params", self)

    @property
    def element_cap(self) -> int:
        return DEFAULT_MAX_ELEMENTS if self.max_elements is None else self.max_elements


@dataclass
class OCRTextParams:
    ocr_store: str | None = None  # the ocr extractor's store for the same manifest (required)
    model: str = "minilm-l6"
    pooling: str = "mean"
    max_length: int = 256
    min_conf: float = 0.5  # words the OCR was less sure of are left out (Tesseract's are mostly noise)
    dtype: str = "float16"
    weights: str = "pretrained"  # as the text extractor's

    def __post_init__(self) -> None:
        if not self.model:
            raise ParamsError("ocr_text params.model: must name a model")
        if not 0 <= self.min_conf <= 1:
            raise ParamsError(f"ocr_text params.min_conf: {self.min_conf} is not in [0, 1]")
        check_encoder_params("ocr_text params", self)


def check_encoder_params(where: str, params: TextParams | OCRTextParams) -> None:
    check_choice(f"{where}.pooling", params.pooling, POOLINGS)
    check_choice(f"{where}.dtype", params.dtype, DTYPES)
    check_choice(f"{where}.weights", params.weights, WEIGHTS)
    if params.max_length < 8:
        raise ParamsError(f"{where}.max_length: {params.max_length} is below 8 tokens")


def segments(value: Any, segment: str) -> list[str]:
    """The texts one field value becomes: none for a missing/blank value, else one, or one per paragraph."""
    if is_missing(value):
        return []
    if not isinstance(value, str):  # a loader that kept a list of summaries
        value = "\n".join(str(v) for v in value) if isinstance(value, (list, tuple, np.ndarray)) else str(value)
    if segment == "paragraph":
        return [p.strip() for p in value.splitlines() if p.strip()]
    return [value.strip()] if value.strip() else []


def extract_text(manifest: Manifest, out_path: str | os.PathLike, params: TextParams,
                 runtime: Runtime | None = None) -> dict[str, Any]:
    """Write one vector per (field, segment) of each item to the ragged store ``out_path``.

    Elements carry their field name in the per-element string field ``field``. A missing or blank
    field gives no element and counts as ``no_text``; an interrupted run resumes.
    """
    unknown = [f for f in params.fields if f not in manifest.text_fields]
    if unknown:
        raise ParamsError(f"text params.fields: {unknown} not in the manifest; it has {manifest.text_fields}")
    ids = [str(i) for i in manifest.frame["id"]]
    # elements[i]: (field, text) pairs of item i, in field order then paragraph order
    elements: list[list[tuple[str, str]]] = [[] for _ in ids]
    no_text = []
    for name in params.fields:
        for i, value in enumerate(manifest.text(name)):
            parts = segments(value, params.segment)
            if not parts:
                no_text.append(ids[i])
            elements[i].extend((name, p) for p in parts)
    elements, n_cut = cut_each(elements, params.element_cap)
    return embed_elements(out_path, EXTRACTOR, params, ids, elements, no_text, runtime,
                          inputs=item_inputs(manifest, EXTRACTOR, params),
                          extra={CUT_KEY: n_cut, "max_elements": params.element_cap})


def cut_each(elements: list[list[tuple[str, str]]], cap: int) -> tuple[list[list[tuple[str, str]]], int]:
    """Each item's first ``cap`` elements, and how many items had more."""
    pairs = [cut_to(item, cap) for item in elements]
    return [kept for kept, _ in pairs], sum(cut for _, cut in pairs)


def extract_ocr_text(manifest: Manifest, out_path: str | os.PathLike, params: OCRTextParams,
                     runtime: Runtime | None = None) -> dict[str, Any]:
    """Write one vector per item of the words the ocr extractor read on its image, in reading order.

    Elements have ``field`` "ocr". An item with no word (at ``min_conf``) gives no element and counts as
    ``no_text``; one absent from the OCR store (made from another manifest) is a ParamsError.
    """
    if not params.ocr_store:
        raise ParamsError("ocr_text params.ocr_store: name the ocr extractor's store to read the words from")
    ids = [str(i) for i in manifest.frame["id"]]
    with RaggedStore(params.ocr_store) as store:
        if store.attrs.get("extractor") != "ocr":
            raise ParamsError(f"ocr_text params.ocr_store: {params.ocr_store} was written by the "
                              f"{store.attrs.get('extractor')!r} extractor, not 'ocr'")
        absent = [i for i in ids if i not in store]
        if absent:
            raise ParamsError(f"ocr_text params.ocr_store: {params.ocr_store} lacks {len(absent)} manifest item(s), "
                              f"e.g. {absent[0]!r}; run the ocr extractor on this manifest")
        texts = ocr_texts(store, ids, params.min_conf)
        attrs = {"ocr_backend": store.attrs.get("backend", ""),
                 "ocr_backend_version": store.attrs.get("backend_version", "")}
    elements = [[("ocr", t)] if t else [] for t in texts]
    no_text = [i for i, t in zip(ids, texts) if not t]
    return embed_elements(out_path, OCR_EXTRACTOR, params, ids, elements, no_text, runtime, attrs,
                          item_inputs(manifest, OCR_EXTRACTOR, params))


def ocr_texts(store: RaggedStore, ids: list[str], min_conf: float = 0.0) -> list[str]:
    """Each item's OCR words at ``min_conf`` or above, joined in the store's (reading) order."""
    return [" ".join(w for w, row in zip(words, data) if row[4] >= min_conf and w.strip())
            for words, data in zip(store.get(ids, "text"), store.get(ids))]


def embed_elements(
    out_path: str | os.PathLike,
    extractor: str,
    params: TextParams | OCRTextParams,
    ids: list[str],
    elements: list[list[tuple[str, str]]],
    no_text: list[str],
    runtime: Runtime | None = None,
    attrs: Mapping[str, Any] | None = None,
    inputs: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Embed each item's (field, text) ``elements`` and store them, resuming a partial store (of the same
    ``inputs``: ``mmsets.extract.fingerprints.item_inputs``).

    ``no_text`` lists the item ids to count as ``no_text`` (once per missing field); ``runtime.batch_size``
    texts go through the encoder at once; ``extra`` joins the store summary.
    """
    runtime = runtime or Runtime()
    device = resolve_device(runtime.device)
    encoder = load_text_encoder(params.model, device, weights=params.weights)
    if encoder.max_length is not None and params.max_length > encoder.max_length:
        raise ParamsError(f"{extractor} params.max_length: {params.max_length} is over {params.model}'s "
                          f"{encoder.max_length}")
    writer = RaggedWriter(out_path, extractor=extractor, dim=encoder.dim, dtype=params.dtype, model=params.model,
                          params=dataclasses.asdict(params), fields={"field": ((), "str")}, attrs=attrs, resume=True,
                          inputs=inputs)
    tally = RunTally(device)
    for item_id in no_text:
        tally.skip(item_id, "no_text")
    done = [t for i, item_id in enumerate(ids) if item_id in writer.done_ids for _, t in elements[i]]
    truncated = count_truncated(encoder, done, params.max_length)
    todo = [i for i, item_id in enumerate(ids) if item_id not in writer.done_ids]
    bar = progress(len(todo), f"{extractor} {params.model}", enabled=runtime.progress)
    with resumable(writer), bar:
        for start in range(0, len(todo), CHUNK_ITEMS):
            chunk = todo[start:start + CHUNK_ITEMS]
            texts = [t for i in chunk for _, t in elements[i]]
            vectors = embed_texts(encoder, texts, params.pooling, params.max_length, runtime.batch_size)
            truncated += count_truncated(encoder, texts, params.max_length)
            row = 0
            for i in chunk:
                k = len(elements[i])
                writer.add(ids[i], vectors[row:row + k], field=[name for name, _ in elements[i]])
                row += k
                tally.processed += 1
            bar.update(len(chunk))
    return tally.finish(writer, truncated=truncated, **(extra or {}))
