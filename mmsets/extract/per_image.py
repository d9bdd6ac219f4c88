"""What every image-reading extractor shares: decoding an item's image, and the loop over the manifest.

Inputs are made in DataLoader workers; an item whose input cannot be made (``ImageSkip``: no image,
a missing, broken or too large file, ...) is stored with zero elements and counted by its reason.
An interrupted run resumes from the committed items of the partial store.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mmsets.data.manifest import Manifest, is_missing
from mmsets.extract.backbones import to_rgb
from mmsets.extract.common import ExtractError, RunTally, empty_done_ids, resumable
from mmsets.runtime import Runtime, worker_init
from mmsets.store import RaggedWriter


class ImageSkip(Exception):
    """An item that yields no element; ``reason`` is the summary's key."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason, detail)  # both in args, so it pickles back from a DataLoader worker
        self.reason, self.detail = reason, detail

    def __str__(self) -> str:
        return self.detail or self.reason


def open_image(path: Any, max_pixels: int | None = None) -> Image.Image:
    """Decode one image file or raise ImageSkip with no_image / not_a_file / missing_file / too_large / corrupt."""
    if is_missing(path):
        raise ImageSkip("no_image")
    path = Path(path)
    if path.is_dir():
        raise ImageSkip("not_a_file", f"{path}: is a folder, not an image file")
    if not path.is_file():
        raise ImageSkip("missing_file", f"{path}: no such file")
    try:
        with Image.open(path) as image:
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise ImageSkip("too_large", f"{path}: {image.width}x{image.height} pixels is over {max_pixels}")
            image.load()  # a truncated file fails here, not at open
            return to_rgb(image)
    except ImageSkip:
        raise
    except Image.DecompressionBombError as err:
        raise ImageSkip("too_large", f"{path}: {err}") from None
    except Exception as err:  # PIL raises many kinds for broken files (OSError, SyntaxError, struct.error, ...)
        raise ImageSkip("corrupt", f"{path}: {type(err).__name__}: {err}") from None


def image_paths(manifest: Manifest, image_root: str | os.PathLike | None = None) -> list[Any]:
    """The manifest's image paths, relative ones taken from ``image_root``; a missing one stays as it is.

    When not one of the paths names a file, the paths are wrong, not the images: an ExtractError names the
    first ones rather than a store of items without elements."""
    paths = list(manifest.frame["image"])
    if image_root is not None:
        paths = [p if is_missing(p) else str(Path(image_root) / p) for p in paths]  # absolute: kept
    given = [p for p in paths if not is_missing(p)]
    if given and not any(os.path.isfile(p) for p in given):
        shown = ", ".join(repr(str(p)) for p in given[:3])
        raise ExtractError(f"none of the manifest's {len(given)} image paths is a file (first: {shown}; "
                           f"working folder {os.getcwd()!r}): prepare the manifest again where the images are, "
                           f"or give the folder relative paths start from (runtime image_root)")
    return paths


def keep_image(image: Image.Image) -> Image.Image:
    return image


class ImageFiles(Dataset):
    """``transform`` of each decoded image, by manifest row; raises ImageSkip."""

    def __init__(self, paths: list[Any], transform: Callable[[Image.Image], Any] = keep_image,
                 max_pixels: int | None = None) -> None:
        self.paths, self.transform, self.max_pixels = paths, transform, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        image = open_image(self.paths[i], self.max_pixels)
        try:
            return self.transform(image)
        except Exception as err:  # a decodable image the transform cannot take (e.g. 0 pixels wide)
            raise ImageSkip("corrupt", f"{self.paths[i]}: {type(err).__name__}: {err}") from None


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
    with resumable(writer), tqdm(total=len(todo), unit=unit, desc=desc, disable=not runtime.progress) as bar:
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


def run_per_image(
    manifest: Manifest,
    writer: RaggedWriter,
    tally: RunTally,
    process: Callable[[Any], list[Elements]],
    runtime: Runtime,
    *,
    transform: Callable[[Image.Image], Any] = keep_image,
    **loop: Any,
) -> None:
    """``run_items`` (``loop``: its keywords) over the manifest's images, each decoded and ``transform``-ed
    in a worker; relative paths are taken from ``runtime.image_root``, and ``runtime.max_pixels`` also
    refuses images PIL itself would still open."""
    inputs = ImageFiles(image_paths(manifest, runtime.image_root), transform, runtime.max_pixels)
    run_items([str(i) for i in manifest.frame["id"]], inputs, writer, tally, process, runtime, **loop)
