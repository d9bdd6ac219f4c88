"""The summary of a store gathered from shards (docs/formats.md): each shard's summary, summed or joined."""

from __future__ import annotations

from typing import Any, Iterable

from mmsets.extract.tally import MAX_ERRORS

# Keys of every summary that count items (ints, or {name: int}); an extractor's entry names its own
# (``Extractor.count_keys``).
COUNT_KEYS = frozenset({"items", "with_elements", "elements", "skipped", "resumed"})


def add_counts(a: Any, b: Any) -> Any:
    """Two counts summed: ints, or {name: count} mappings key by key."""
    if isinstance(a, dict):
        return {k: add_counts(a.get(k, 0), b.get(k, 0)) for k in sorted(a.keys() | b.keys())}
    return a + b


def merged_summary(summaries: list[dict[str, Any]], count_keys: Iterable[str] = ()) -> dict[str, Any]:
    """The summary of a store gathered from shards: counts (``COUNT_KEYS`` and the extractor's ``count_keys``)
    summed, errors joined (up to MAX_ERRORS), seconds summed, a setting all shards agree on kept; ``shards``
    holds each one's own."""
    counted = COUNT_KEYS | set(count_keys)
    merged: dict[str, Any] = {}
    for key in dict.fromkeys(k for s in summaries for k in s):
        values = [s[key] for s in summaries if key in s]
        if key in counted:
            total = values[0]
            for value in values[1:]:
                total = add_counts(total, value)
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
