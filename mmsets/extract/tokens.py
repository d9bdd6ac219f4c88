"""Token-state extractor: DM2S2's input, the frozen encoder's hidden state of every token (Kitada et al., Sec. III-B).

Every modality becomes text (Sec. IV-B, App. B: "we converted the obtained features, including numeric
ones, as strings"), one span each, and one encoder reads ``[CLS] m1 [SEP] m2 [SEP] ... mM [SEP]``
(Eq. 2, :func:`mmsets.data.sequences.build_segments`). The sources of ``params.modalities``, in order:

    text:<field>   the manifest's ``text_<field>`` (title, plot, ...)
    cat:<field>    a categorical value as ``"<field>: <value>"``
    ocr            the words of the ``ocr`` store (field ``text``), in reading order, joined by spaces
    objects        the class names of the ``objects`` store (field ``label``), most confident first
    labels         the names of the ``labels`` store (field ``text``), most confident first
    faces          the number of elements of the ``faces`` store as words: "no faces", "1 face", "2 faces"

A missing value (None or blank text, no store elements) is an empty span, so the spans keep their
order. Faces are the exception: a detector that found none has observed something, so 0 faces is the
span "no faces"; the span is empty only when the item has no image or the faces store lacks it.

Each token's state at ``layer`` (-1: the last) is stored as float16, specials included, with the
per-token field ``modality`` (the source's index, -1 for [CLS]/[SEP]) and the store attribute
``modalities`` naming the indices; :class:`mmsets.data.sequences.SequenceDataset` reads it back.

Position ids. ``"global"`` numbers the tokens 0..T-1 as the encoder was trained. ``"per_modality"``
restarts them at every span (each span and its [SEP] are numbered as if it followed [CLS] alone), so
moving a span changes none of its position embeddings: the encoder comes closer to the order
invariance DM2S2 has downstream, although attention still mixes the spans, and models with relative
position biases (MPNet) still see the global order. RoBERTa and MPNet number positions from
``padding_idx + 1``; that offset is added here.

Fine-tuning. The paper freezes the encoder, so its states are computed once here. Fine-tuning its
last k layers cannot use this cache: the trainer would run the encoder itself on the ids of
``build_segments`` (or cache only the states below layer L - k and run the top k layers), and no store
would be written.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from mmsets.data.manifest import CAT_PREFIX, SPLITS, Manifest, is_missing
from mmsets.extract.autocast import autocast
from mmsets.extract.fingerprints import item_inputs
from mmsets.extract.params import WEIGHTS, check_choice, check_names
from mmsets.extract.resume import resumable
from mmsets.extract.tally import RunTally
from mmsets.plan.errors import ParamsError
from mmsets.plan.sources import STORE_FIELDS, STORE_SOURCES, parse_source, upstream_stores
from mmsets.progress import progress
from mmsets.runtime import Runtime, resolve_device
from mmsets.store import RaggedStore, RaggedWriter, StoreError

if TYPE_CHECKING:
    from mmsets.extract.backbones import TextEncoder

EXTRACTOR = "tokens"
POSITION_IDS = ("global", "per_modality")
RANKED = ("objects", "labels")  # listed by descending score when the store has ``scores`` (Sec. IV-B)
MAX_MODALITIES = 127  # modality ids are stored as int8
CHUNK_ITEMS = 256  # items encoded (sorted by length) and committed together


@dataclass
class TokensParams:
    modalities: list[str] = field(default_factory=lambda: ["text:title", "text:plot"])
    model: str = "minilm-l6"  # as load_text_encoder: minilm-l6, mpnet-base (offline), roberta-large (the paper's)
    layer: int = -1  # hidden layer stored: -1 the last, 0 the embeddings
    max_length: int | None = None  # encoder window; None: min(512, the model's limit)
    budgets: dict[str, int] | None = None  # source -> most tokens it may keep; the rest share the window
    position_ids: str = "global"  # "per_modality": restart at each span (see the module docstring)
    stores: dict[str, str] = field(default_factory=dict)  # store source (ocr, objects, labels, faces) -> path
    weights: str = "pretrained"  # "random": the same encoder, seeded random weights (rehearsals, tests)
    splits: list[str] | None = None  # only these splits' items (the erasure stores: test); None: every item

    def __post_init__(self) -> None:
        self.modalities = list(self.modalities)
        if self.splits is not None:
            check_names("tokens params.splits", list(self.splits), "name a split, or leave it out for all", "split")
            for split in self.splits:
                check_choice("tokens params.splits", split, SPLITS)
            self.splits = list(self.splits)
        check_names("tokens params.modalities", self.modalities, "name at least one source", "source")
        if len(self.modalities) > MAX_MODALITIES:
            raise ParamsError(f"tokens params.modalities: at most {MAX_MODALITIES} sources")
        for source in self.modalities:
            parse_source(source)
        if not self.model:
            raise ParamsError("tokens params.model: must name a model")
        check_choice("tokens params.position_ids", self.position_ids, POSITION_IDS)
        check_choice("tokens params.weights", self.weights, WEIGHTS)
        if self.max_length is not None and self.max_length < 8:
            raise ParamsError(f"tokens params.max_length: {self.max_length} is below 8 tokens")
        if self.max_length is not None and self.max_length < len(self.modalities) + 1:
            raise ParamsError(f"tokens params.max_length: {self.max_length} cannot hold the "
                              f"{len(self.modalities) + 1} special tokens of {len(self.modalities)} modalities")
        self.budgets = None if self.budgets is None else dict(self.budgets)
        for source, cap in (self.budgets or {}).items():
            if source not in self.modalities:
                raise ParamsError(f"tokens params.budgets: {source!r} is not one of the modalities {self.modalities}")
            if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
                raise ParamsError(f"tokens params.budgets.{source}: {cap!r} is not a token count >= 0")
        self.stores = dict(self.stores)
        for source, path in self.stores.items():
            if source not in STORE_SOURCES:
                raise ParamsError(f"tokens params.stores: {source!r} is not a store source; "
                                  f"known: {list(STORE_SOURCES)}")
            if not isinstance(path, (str, os.PathLike)) or not str(path):
                raise ParamsError(f"tokens params.stores.{source}: {path!r} is not a path")
        needed = upstream_stores(self.modalities)
        missing = [s for s in needed if s not in self.stores]
        if missing:
            raise ParamsError(f"tokens params.stores: modalities {missing} need their store's path, e.g. "
                              f"stores: {{{missing[0]}: results/<dataset>/features/{missing[0]}.h5}}")
        # A store no modality reads does not change the output: drop it so it is not recorded.
        self.stores = {s: str(self.stores[s]) for s in needed}


# ----------------------------------------------------------------------------------- modality texts

def faces_text(count: int) -> str:
    """The face count as words, as in the paper's Fig. 4 ("# Faces 2")."""
    return "no faces" if count == 0 else "1 face" if count == 1 else f"{count} faces"


def field_text(value: Any) -> str | None:
    """A manifest text value (str, or a list of paragraphs) as one text; None when missing or blank."""
    if isinstance(value, (list, tuple, np.ndarray)):
        value = "\n".join(str(v) for v in value if not is_missing(v))
    if is_missing(value):
        return None
    return str(value).strip()


def categorical_text(name: str, value: Any) -> str | None:
    """``"genre: drama"``; 3, 3.0 and "3" read alike; None when the value is missing."""
    if isinstance(value, (list, tuple, np.ndarray)):
        values = [categorical_text(name, v) for v in value]
        values = [v.split(": ", 1)[1] for v in values if v is not None]
        return f"{name}: {', '.join(values)}" if values else None
    if is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        value = bool(value)
    elif isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return f"{name}: {str(value).strip()}"


def store_texts(source: str, path: str | os.PathLike, ids: Sequence[str],
                has_image: Sequence[bool] | None = None) -> tuple[list[str | None], int]:
    """One text per item from an upstream store, and how many items the store lacks (their span is empty)."""
    try:
        store = RaggedStore(path)
    except (StoreError, FileNotFoundError) as err:
        raise ParamsError(f"tokens params.stores.{source}: {err}") from err
    with store:
        offsets = store.offsets
        rows = [slice(int(offsets[k]), int(offsets[k + 1])) if (k := store.index.get(item_id)) is not None else None
                for item_id in ids]  # None: the store lacks the item
        if source == "faces":
            has_image = [True] * len(ids) if has_image is None else has_image
            texts = [faces_text(r.stop - r.start) if r is not None and img else None for r, img in zip(rows, has_image)]
        else:
            name = STORE_FIELDS[source]
            if name not in store.fields:
                raise ParamsError(f"tokens params.stores.{source}: {path} has no per-element field {name!r} "
                                  f"(it has {store.fields})")
            words = store.file[name].asstr()[:]  # every row at once: one read instead of one per item
            scores = store.file["scores"][:] if source in RANKED and "scores" in store.fields else None
            texts = [None if r is None else _join(words[r], None if scores is None else scores[r]) for r in rows]
    return texts, sum(r is None for r in rows)


def _join(words: np.ndarray, scores: np.ndarray | None) -> str | None:
    """Words joined by spaces, the highest score first when scores are given; None when there are none."""
    if scores is not None:
        words = words[np.argsort(-scores, kind="stable")]
    return " ".join(w.strip() for w in words if w.strip()) or None


def modality_texts(manifest: Manifest, params: TokensParams) -> tuple[list[list[str | None]], dict[str, int]]:
    """``texts[m][i]``: source m's text for item i (None: empty span), and per store source the items it lacks."""
    ids = [str(i) for i in manifest.frame["id"]]
    texts, not_in_store = [], {}
    for source in params.modalities:
        kind, name = parse_source(source)
        if kind == "text":
            if name not in manifest.text_fields:
                raise ParamsError(f"tokens params.modalities: {source!r}: no text field {name!r} in the manifest; "
                                  f"it has {manifest.text_fields}")
            texts.append([field_text(v) for v in manifest.text(name)])
        elif kind == "cat":
            if name not in manifest.categorical_fields:
                raise ParamsError(f"tokens params.modalities: {source!r}: no categorical field {name!r} in the "
                                  f"manifest; it has {manifest.categorical_fields}")
            texts.append([categorical_text(name, v) for v in manifest.frame[CAT_PREFIX + name]])
        else:
            has_image = [not is_missing(v) for v in manifest.frame["image"]]
            column, lacking = store_texts(kind, params.stores[kind], ids, has_image)
            texts.append(column)
            not_in_store[source] = lacking
    return texts, not_in_store


# ------------------------------------------------------------------------------------------ encoder

def modality_position_ids(modality: np.ndarray, mode: str = "global") -> np.ndarray:
    """Position of each token: 0..T-1 (``global``), or restarting at 1 after every [SEP] (``per_modality``).

    ``per_modality``: [CLS] is 0 and each span's tokens and its closing [SEP] are 1, 2, ... .
    """
    n = len(modality)
    if mode == "global":
        return np.arange(n, dtype=np.int64)
    t = np.arange(n)
    starts = np.zeros(n, bool)
    starts[1:] = modality[:-1] < 0  # a span starts after [CLS] or a [SEP]
    start = np.maximum.accumulate(np.where(starts, t, 0))
    pos = t - start + 1
    pos[0] = 0
    return pos.astype(np.int64)


def position_offset(model: Any) -> int:
    """First position id the model uses: RoBERTa and MPNet count from ``padding_idx + 1``, BERT from 0."""
    padding_idx = getattr(getattr(model, "embeddings", None), "padding_idx", None)
    return 0 if padding_idx is None else int(padding_idx) + 1


def accepts_position_ids(model: Any) -> bool:
    import inspect

    return "position_ids" in inspect.signature(model.forward).parameters


def encoder_window(encoder: TextEncoder, max_length: int | None) -> int:
    """The window the encoder reads: ``max_length``, or min(512, the tokenizer's and the position table's limits)."""
    limits = [encoder.max_length] if encoder.max_length is not None else []
    n_positions = getattr(encoder.model.config, "max_position_embeddings", None)
    if n_positions:
        limits.append(int(n_positions) - position_offset(encoder.model))
    limit = min(limits) if limits else None
    if max_length is None:
        return min([512, *limits])
    if limit is not None and max_length > limit:
        raise ParamsError(f"tokens params.max_length: {max_length} is over {encoder.name}'s {limit}")
    return max_length


def encode_sequences(encoder: TextEncoder, input_ids: Sequence[np.ndarray], modality: Sequence[np.ndarray],
                     layer: int = -1, position_ids: str = "global", batch_size: int = 32) -> list[np.ndarray]:
    """(T_i, H) float16 states at ``layer`` of every token of each sequence, in input order.

    Sequences are batched longest first (little padding); on CUDA the encoder runs under bf16 autocast.
    """
    import torch

    from mmsets.extract.backbones import longest_first

    model, device = encoder.model, encoder.device
    pad_id = encoder.tokenizer.pad_token_id or 0
    offset = position_offset(model)
    explicit = position_ids != "global"  # global: the model's own numbering, also for models without position_ids
    out: list[np.ndarray | None] = [None] * len(input_ids)
    for idx in longest_first(input_ids, batch_size):
        t_max = len(input_ids[idx[0]])
        ids = np.full((len(idx), t_max), pad_id, np.int64)
        mask = np.zeros((len(idx), t_max), np.int64)
        pos = np.full((len(idx), t_max), offset, np.int64)
        for b, i in enumerate(idx):
            t = len(input_ids[i])
            ids[b, :t], mask[b, :t] = input_ids[i], 1
            pos[b, :t] = modality_position_ids(modality[i], position_ids) + offset
        inputs = {"input_ids": torch.from_numpy(ids).to(device), "attention_mask": torch.from_numpy(mask).to(device)}
        if explicit:
            inputs["position_ids"] = torch.from_numpy(pos).to(device)
        with torch.inference_mode(), autocast(device):
            result = model(**inputs, output_hidden_states=layer != -1)
        hidden = result.last_hidden_state if layer == -1 else result.hidden_states[layer]
        hidden = hidden.to(torch.float16).cpu().numpy()
        for b, i in enumerate(idx):
            out[i] = hidden[b, :len(input_ids[i])]
    return out


# --------------------------------------------------------------------------------------- extractor

# Per token: its modality (-1 for the specials) and the tokenizer's piece (for the report's attention map)
TOKEN_FIELDS = {"modality": ((), "int8"), "token": ((), "str")}

def extract_tokens(manifest: Manifest, out_path: str | os.PathLike, params: TokensParams,
                   runtime: Runtime | None = None) -> dict[str, Any]:
    """Write the frozen encoder's per-token states of each item's ``[CLS] m1 [SEP] ... mM [SEP]`` to ``out_path``.

    Every item gets a sequence, even with all spans empty (then only its specials). The summary adds
    ``tokens_per_item`` (mean, max), ``tokens_per_s``, and per source ``truncated`` (items whose text
    was cut to fit the window), ``empty`` (empty spans) and ``not_in_store`` (items an upstream store
    lacks). An interrupted run resumes.
    """
    from mmsets.data.sequences import build_segments
    from mmsets.extract.backbones import load_text_encoder

    runtime = runtime or Runtime()
    if params.splits is not None:
        manifest = Manifest(manifest.frame[manifest.frame["split"].isin(params.splits)].reset_index(drop=True),
                            manifest.label_names, manifest.task, manifest.dataset, manifest.extra)
    texts, not_in_store = modality_texts(manifest, params)  # before the model loads: bad params fail fast
    device = resolve_device(runtime.device)
    encoder = load_text_encoder(params.model, device, weights=params.weights)
    max_length = encoder_window(encoder, params.max_length)
    n_layers = int(getattr(encoder.model.config, "num_hidden_layers", 0))
    if n_layers and not -(n_layers + 1) <= params.layer <= n_layers:
        raise ParamsError(f"tokens params.layer: {params.layer} is not a layer of {params.model} "
                          f"(0 = embeddings .. {n_layers}, or -1 .. -{n_layers + 1})")
    if params.position_ids != "global" and not accepts_position_ids(encoder.model):
        raise ParamsError(f"tokens params.position_ids: {params.model} takes no position ids; use 'global'")
    budgets = [(params.budgets or {}).get(s) for s in params.modalities]

    ids = [str(i) for i in manifest.frame["id"]]
    segments = [build_segments(encoder.tokenizer, [column[i] for column in texts], max_length, budgets)
                for i in range(len(ids))]
    kept = np.stack([np.bincount(m[m >= 0], minlength=len(texts)) for _, m in segments]) if ids else \
        np.zeros((0, len(texts)), np.int64)
    full = np.stack([_token_counts(encoder.tokenizer, column) for column in texts], axis=1) if ids else kept

    writer = RaggedWriter(out_path, extractor=EXTRACTOR, dim=encoder.dim, dtype="float16", model=params.model,
                          params=dataclasses.asdict(params), fields=TOKEN_FIELDS,
                          attrs={"modalities": params.modalities, "max_length": max_length,
                                 "position_ids": params.position_ids, "layer": params.layer}, resume=True,
                          inputs=item_inputs(manifest, EXTRACTOR, params))
    tally = RunTally(device)
    todo = [i for i, item_id in enumerate(ids) if item_id not in writer.done_ids]
    encoded_tokens, encode_seconds = 0, 0.0
    bar = progress(len(todo), f"tokens {params.model}", enabled=runtime.progress)
    with resumable(writer), bar:
        for start in range(0, len(todo), CHUNK_ITEMS):
            chunk = todo[start:start + CHUNK_ITEMS]
            tic = time.perf_counter()
            states = encode_sequences(encoder, [segments[i][0] for i in chunk], [segments[i][1] for i in chunk],
                                      params.layer, params.position_ids, runtime.batch_size)
            encode_seconds += time.perf_counter() - tic
            for i, hidden in zip(chunk, states):
                writer.add(ids[i], hidden, modality=segments[i][1],
                           token=encoder.tokenizer.convert_ids_to_tokens([int(t) for t in segments[i][0]]))
                encoded_tokens += len(hidden)
                tally.processed += 1
            bar.update(len(chunk))
            bar.set_postfix(tokens_per_s=round(encoded_tokens / max(encode_seconds, 1e-9)))
    lengths = np.array([len(s[0]) for s in segments])
    return tally.finish(
        writer,
        tokens_per_item={"mean": round(float(lengths.mean()), 2) if len(lengths) else 0.0,
                         "max": int(lengths.max()) if len(lengths) else 0},
        tokens_per_s=round(encoded_tokens / encode_seconds, 1) if encode_seconds > 0 else None,
        max_length=max_length,
        truncated={s: int((full[:, m] > kept[:, m]).sum()) for m, s in enumerate(params.modalities)},
        empty={s: int((kept[:, m] == 0).sum()) for m, s in enumerate(params.modalities)},
        not_in_store=not_in_store,
    )


def _token_counts(tokenizer: Any, column: Sequence[str | None]) -> np.ndarray:
    """Tokens of each text before truncation (0 for None), tokenized in one batch."""
    counts = np.zeros(len(column), np.int64)
    present = [i for i, text in enumerate(column) if text and text.strip()]
    if present:
        pieces = tokenizer([column[i] for i in present], add_special_tokens=False, verbose=False)["input_ids"]
        counts[present] = [len(p) for p in pieces]
    return counts
