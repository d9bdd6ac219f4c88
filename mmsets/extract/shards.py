"""Sharded extraction: an extractor's items in K contiguous blocks of the manifest, one job each (a store
per shard, resumed on its own), gathered into the one store the rest of the workflow reads.

The gathered store holds the shards' items shard after shard, each as an unsharded run writes it; its
summary sums the shards' counts and keeps each shard's own (``mmsets.extract.shard_summary.merged_summary``).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Sequence

from mmsets.plan.errors import ParamsError
from mmsets.plan.extractors import extractor

if TYPE_CHECKING:  # the workflow imports this module in a Python without pandas
    from mmsets.data.manifest import Manifest

SHARD = re.compile(r"(\d+)/(\d+)")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/K"`` (0 <= i < K) as (i, K); a ParamsError otherwise."""
    match = SHARD.fullmatch(text.strip())
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise ParamsError(f"shard {text!r}: expected i/K with 0 <= i < K, e.g. 0/4")
    return int(match[1]), int(match[2])


def shard_bounds(n_items: int, index: int, count: int) -> tuple[int, int]:
    """The manifest rows [start, stop) of shard ``index`` of ``count``: contiguous blocks as equal as can be."""
    return n_items * index // count, n_items * (index + 1) // count


def shard_manifest(manifest: Manifest, index: int, count: int) -> Manifest:
    """The items of shard ``index`` of ``count``, a manifest of their own."""
    from mmsets.data.manifest import Manifest

    start, stop = shard_bounds(len(manifest), index, count)
    return Manifest(manifest.frame.iloc[start:stop].reset_index(drop=True), manifest.label_names, manifest.task,
                    manifest.dataset, manifest.extra)


def gather_shards(name: str, manifest: Manifest | str | os.PathLike, shards: Sequence[str | os.PathLike],
                  out_path: str | os.PathLike) -> dict[str, Any]:
    """Gather the stores of extractor ``name``'s shards 0..K-1 (in that order) of ``manifest`` (a Manifest, or
    its file) into ``out_path``; return its summary. Each shard must hold items of its own block only, written
    with the same header."""
    from mmsets.extract import as_manifest
    from mmsets.extract.shard_summary import merged_summary
    from mmsets.store import INPUTS, RaggedStore, RaggedWriter, StoreError

    where = manifest if isinstance(manifest, (str, os.PathLike)) else "the manifest"
    manifest = as_manifest(manifest)
    ids = list(manifest.frame["id"])
    opened = [RaggedStore(path) for path in shards]
    try:
        settings = opened[0].writer_settings()
        if settings["extractor"] != extractor(name).name:
            raise StoreError(f"{opened[0].path}: a store of extractor {settings['extractor']!r}, not {name!r}")
        for k, store in enumerate(opened):
            theirs = store.writer_settings()
            if theirs != settings:
                differ = sorted(key for key in settings if theirs[key] != settings[key])
                raise StoreError(f"{store.path}: written with other {differ} than {opened[0].path}")
            start, stop = shard_bounds(len(ids), k, len(opened))
            block = set(ids[start:stop])
            outside = [item for item in store.ids if item not in block]
            if outside:
                raise StoreError(f"{store.path}: item {outside[0]!r} is not in shard {k}/{len(opened)} of "
                                 f"{where} (shards are gathered in order 0..K-1 of one manifest)")
        fingerprinted = any(INPUTS in store.file for store in opened)  # add_store brings each item's along
        writer = RaggedWriter(out_path, **settings, inputs={} if fingerprinted else None, resume=False)
        for store in opened:
            writer.add_store(store)
        summary = merged_summary([store.summary for store in opened], extractor(name).count_keys)
        writer.close(**summary)
        return summary
    finally:
        for store in opened:
            store.close()

