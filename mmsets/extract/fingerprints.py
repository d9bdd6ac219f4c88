"""Per item, a fingerprint of what an extractor makes it from: a partial store is continued only for items whose
fingerprint is unchanged (``mmsets.store.RaggedWriter``)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from mmsets.plan.dotted import get_dotted
from mmsets.plan.extractors import extractor


def item_inputs(manifest: Any, name: str | None = None, params: Any = None) -> dict[str, str]:
    """Per item, a fingerprint of what extractor ``name`` makes it from: the item's manifest row (image path,
    text and categorical fields), the image file's size and modification time, and the size and modification
    time of every store the extractor reads (``params``)."""
    stores = []
    if name is not None and params is not None:
        settings = dataclasses.asdict(params)
        stores = [[p, file_identity(p)] for key in extractor(name).upstream_of(settings)
                  if (p := get_dotted(settings, key))]
    frame = manifest.frame
    columns = [c for c in frame.columns if c == "image" or c.startswith(("text_", "cat_"))]
    out = {}
    for item_id, *values in frame[["id", *columns]].itertuples(index=False, name=None):
        row = dict(zip(columns, values))
        image = row.get("image")
        key = json.dumps([row, file_identity(image) if isinstance(image, str) else None, stores], sort_keys=True,
                         default=str)
        out[str(item_id)] = hashlib.blake2b(key.encode(), digest_size=12).hexdigest()
    return out


def file_identity(path: Any) -> list | None:
    """A file's size and modification time, or None when ``path`` names no file."""
    try:
        stat = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return [stat.st_size, stat.st_mtime_ns]
