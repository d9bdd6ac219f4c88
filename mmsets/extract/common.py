"""What every extractor shares: parameter dataclasses from dicts, autocast, the run summary and resuming."""

from __future__ import annotations

import contextlib
import dataclasses
import time
import types
import typing
from collections import Counter
from typing import Any, Mapping


from mmsets.plan.errors import ParamsError
from mmsets.store import RaggedWriter

if typing.TYPE_CHECKING:
    import torch

MAX_ERRORS = 50
DTYPES = ("float16", "float32")
# "random": the same architecture with seeded random weights, for rehearsals and tests of the papers' models
WEIGHTS = ("pretrained", "random")


def item_inputs(manifest: Any, name: str | None = None, params: Any = None) -> dict[str, str]:
    """Per item, a fingerprint of what extractor ``name`` makes it from: the item's manifest row (image path,
    text and categorical fields), the image file's size and modification time, and the size and modification
    time of every store the extractor reads (``params``). A partial store is continued only for items whose
    fingerprint is unchanged (``mmsets.store.RaggedWriter``)."""
    import hashlib
    import json
    import os

    from mmsets.extract.recipe import get_dotted
    from mmsets.plan.extractors import extractor

    def identity(path: Any) -> list | None:
        try:
            stat = os.stat(path)
        except (OSError, TypeError, ValueError):
            return None
        return [stat.st_size, stat.st_mtime_ns]

    stores = []
    if name is not None and params is not None:
        settings = dataclasses.asdict(params)
        stores = [[p, identity(p)] for key in extractor(name).upstream_of(settings)
                  if (p := get_dotted(settings, key))]
    frame = manifest.frame
    columns = [c for c in frame.columns if c == "image" or c.startswith(("text_", "cat_"))]
    out = {}
    for item_id, *values in frame[["id", *columns]].itertuples(index=False, name=None):
        row = dict(zip(columns, values))
        image = row.get("image")
        key = json.dumps([row, identity(image) if isinstance(image, str) else None, stores], sort_keys=True,
                         default=str)
        out[str(item_id)] = hashlib.blake2b(key.encode(), digest_size=12).hexdigest()
    return out


class ExtractError(RuntimeError):
    """An extraction that cannot give a meaningful store (every image path wrong, say); the message says why."""


def params_from_dict(cls: type, params: Mapping[str, Any] | None, *, where: str = "params") -> Any:
    """Build the dataclass ``cls`` from ``params``, naming any unknown key or wrongly typed value."""
    params = dict(params or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ParamsError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    for key, value in params.items():
        if not _matches(value, hints[key]):
            raise ParamsError(f"{where}.{key}: {value!r} is not of type {_type_name(hints[key])}")
    return cls(**params)


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1] or (typing.Any,)
        return isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or hint)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_choice(where: str, value: Any, choices: typing.Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ParamsError(f"{where}: {value!r} is not one of {list(choices)}")


def check_names(where: str, names: list[Any], empty: str, item: str) -> None:
    """Refuse an empty list of names (``empty`` says what to give instead) and a repeated one."""
    if not names:
        raise ParamsError(f"{where}: {empty}")
    if len(set(names)) != len(names):
        raise ParamsError(f"{where}: {names} repeats a {item}")


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (halves memory and time, features are stored as float16 anyway); none on CPU."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class RunTally:
    """Counts what a run skipped and why, and writes the store summary (docs/formats.md, "Feature stores")."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.skipped: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()  # items not stored: a service failed on them (retried next run)
        self.errors: list[dict[str, str]] = []
        self.processed = 0
        self.start = time.perf_counter()

    def fail(self, item_id: str, reason: str, detail: str | None = None) -> None:
        """Count an item a service failed on; it is not stored, and ``finish`` then leaves the store partial."""
        self.failed[reason] += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"id": item_id, "reason": reason, "detail": detail or ""})

    def skip(self, item_id: str, reason: str, detail: str | None = None) -> None:
        """Count ``reason``; a ``detail`` marks it an error worth listing (a broken file, not an absent one)."""
        self.skipped[reason] += 1
        if detail is not None and len(self.errors) < MAX_ERRORS:
            self.errors.append({"id": item_id, "reason": reason, "detail": detail})

    def summary(self, writer: RaggedWriter) -> dict[str, Any]:
        seconds = time.perf_counter() - self.start
        counts = writer.counts()
        return {
            "items": int(writer.n_items),
            "with_elements": int((counts > 0).sum()),
            "elements": int(counts.sum()),
            "skipped": dict(sorted(self.skipped.items())),
            "errors": self.errors,
            "items_per_s": round(self.processed / seconds, 3) if seconds > 0 else None,
            "seconds": round(seconds, 3),
            "device": str(self.device),
            "resumed": int(writer.n_items - self.processed),
            **({"restarted": writer.restarted} if writer.restarted else {}),
        }

    def finish(self, writer: RaggedWriter, **extra: Any) -> dict[str, Any]:
        """Seal ``writer`` with the summary, the extractor's own keys ``extra`` last, and return it; with items
        a service failed on, leave the store partial (the rest kept) and raise an ExtractError instead."""
        if self.failed:
            writer.abort()
            failed = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.failed.items()))
            first = next((e for e in self.errors if e["reason"] in self.failed), {})
            raise ExtractError(f"{sum(self.failed.values())} item(s) failed ({failed}; first {first.get('id')!r}: "
                               f"{first.get('detail')}); they are not stored and the partial store keeps the other "
                               f"{writer.n_items}: run again to retry them")
        summary = {**self.summary(writer), **extra}
        writer.close(**summary)
        return summary


# Summary keys that count items (ints, or {name: int}): a gathered store's are its shards' sums.
COUNT_KEYS = frozenset({"items", "with_elements", "elements", "skipped", "resumed", "no_face", "degenerate_boxes",
                        "truncated", "empty", "not_in_store"})


def _add_counts(a: Any, b: Any) -> Any:
    if isinstance(a, dict):
        return {k: _add_counts(a.get(k, 0), b.get(k, 0)) for k in sorted(a.keys() | b.keys())}
    return a + b


def merged_summary(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of a store gathered from shards (docs/formats.md): counts summed, errors joined (up to
    MAX_ERRORS), seconds summed, a setting all shards agree on kept; ``shards`` holds each one's own."""
    merged: dict[str, Any] = {}
    for key in dict.fromkeys(k for s in summaries for k in s):
        values = [s[key] for s in summaries if key in s]
        if key in COUNT_KEYS:
            total = values[0]
            for value in values[1:]:
                total = _add_counts(total, value)
            merged[key] = total
        elif key == "errors":
            merged[key] = [e for value in values for e in value][:MAX_ERRORS]
        elif key == "seconds":
            merged[key] = round(sum(values), 3)
        elif key == "restarted":
            merged[key] = "; ".join(values)
        elif all(v == values[0] for v in values) and len(values) == len(summaries):
            merged[key] = values[0]
    processed = merged.get("items", 0) - merged.get("resumed", 0)
    if merged.get("seconds"):
        merged["items_per_s"] = round(processed / merged["seconds"], 3)
    merged["shards"] = summaries
    return merged


@contextlib.contextmanager
def resumable(writer: RaggedWriter) -> typing.Iterator[None]:
    """On any failure, Ctrl-C included, keep the committed items in the partial file for a resume."""
    try:
        yield
    except BaseException:
        writer.abort()
        raise


def empty_done_ids(writer: RaggedWriter) -> set[str]:
    """Ids a resumed store already holds with zero elements (their skip reason must be counted again)."""
    counts = writer.counts()
    ids = writer.file["ids"].asstr()[: writer.n_items]
    return {item_id for item_id, k in zip(ids, counts) if k == 0}
