"""The loop shared by extractors that turn each image into a few labelled elements (OCR words, class labels).

Images are decoded in DataLoader workers through image.py's ``open_image``, so a bad file is handled
(and counted) exactly as the image extractor does; an interrupted run resumes from the partial store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mmsets.data.manifest import Manifest
from mmsets.extract.common import RunTally, empty_done_ids
from mmsets.extract.image import ImageSkip, ManifestImages, _resolve, open_image
from mmsets.store import RaggedWriter


@dataclass
class Elements:
    """What one image gave: ``data`` (k, dim), per-element ``fields``, or the ``error`` (reason, detail)
    of a service that failed on this image alone (it is stored with zero elements and listed)."""

    data: np.ndarray
    fields: dict[str, Sequence[Any]] = field(default_factory=dict)
    error: tuple[str, str] | None = None


def keep_image(image: Image.Image) -> Image.Image:
    return image


def collate(batch: list[tuple[int, Any, ImageSkip | None]]):
    """Indices, the decoded images (stacked when they are tensors, else a list) and the skips by index."""
    index = [i for i, _, _ in batch]
    images = [x for _, x, skip in batch if skip is None]
    skips = {i: skip for i, _, skip in batch if skip is not None}
    if images and isinstance(images[0], torch.Tensor):
        images = torch.stack(images)
    return index, images, skips


def run_per_image(
    manifest: Manifest,
    writer: RaggedWriter,
    tally: RunTally,
    process: Callable[[Any], list[Elements]],
    *,
    empty_reason: str,
    desc: str,
    transform: Callable[[Image.Image], Any] = keep_image,
    batch_size: int = 16,
    num_workers: int = 2,
    max_pixels: int | None = None,
    image_root: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``process``'s elements for every manifest item not yet in ``writer``; seal it, return the summary.

    An item whose image cannot be read, or whose image gives no element (``empty_reason``, e.g.
    ``no_text``), is stored with zero elements and counted.
    """
    frame = manifest.frame
    ids = [str(i) for i in frame["id"]]
    paths = [_resolve(p, image_root) for p in frame["image"]]
    empty = {name: tuple(writer.file[name].shape[1:]) for name in writer.fields}
    # A resumed item without elements is counted again: a decode tells a bad image from an empty one
    # (an item a service failed on counts as empty then).
    row = {item_id: i for i, item_id in enumerate(ids)}
    for item_id in empty_done_ids(writer) & row.keys():
        try:
            open_image(paths[row[item_id]], max_pixels)
            tally.skip(item_id, empty_reason)
        except ImageSkip as skip:
            tally.skip(item_id, skip.reason, skip.detail)
    todo = [i for i, item_id in enumerate(ids) if item_id not in writer.done_ids]
    loader = DataLoader(ManifestImages([paths[i] for i in todo], transform, max_pixels), batch_size=batch_size,
                        num_workers=num_workers, collate_fn=collate)
    try:
        with tqdm(total=len(todo), unit="img", desc=desc, disable=not progress) as bar:
            for index, images, skips in loader:
                results = iter(process(images) if len(images) else ())
                for j in index:
                    item_id = ids[todo[j]]
                    out = None if j in skips else next(results)
                    if out is None:
                        tally.skip(item_id, skips[j].reason, skips[j].detail)
                    elif out.error is not None:
                        tally.skip(item_id, *out.error)
                    elif len(out.data) == 0:
                        tally.skip(item_id, empty_reason)
                    if out is None or out.error is not None:
                        writer.add(item_id, np.zeros((0, writer.dim), np.float32),
                                   **{name: np.zeros((0, *shape)) for name, shape in empty.items()})
                    else:
                        writer.add(item_id, out.data, **out.fields)
                    tally.processed += 1
                bar.update(len(index))
    except BaseException:
        writer.abort()
        raise
    summary = tally.summary(writer)
    writer.close(**summary)
    return summary
