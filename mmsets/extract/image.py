"""Whole-image extractor, WSL(i) in DMMS: one CNN vector per item that has a readable image."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mmsets.data.manifest import Manifest
from mmsets.extract.backbones import ImageBackbone, load_image_backbone, to_rgb
from mmsets.extract.common import DTYPES, ParamsError, RunTally, check_choice, empty_done_ids, is_missing, \
    params_from_dict, resolve_device
from mmsets.store import RaggedWriter

EXTRACTOR = "image"


@dataclass
class ImageParams:
    model: str = "efficientnet_lite0"
    image_size: int | None = None  # None: the model's own input size
    dtype: str = "float16"

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> "ImageParams":
        return params_from_dict(cls, params, where="image params")

    def __post_init__(self) -> None:
        if not self.model:
            raise ParamsError("image params.model: must name a model")
        if self.image_size is not None and self.image_size < 16:
            raise ParamsError(f"image params.image_size: {self.image_size} is below 16 pixels")
        check_choice("image params.dtype", self.dtype, DTYPES)


class ImageSkip(Exception):
    """An image that yields no element; ``reason`` is the summary's key."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason, detail)  # both in args, so it pickles back from a DataLoader worker
        self.reason, self.detail = reason, detail

    def __str__(self) -> str:
        return self.detail or self.reason


def open_image(path: Any, max_pixels: int | None = None) -> Image.Image:
    """Decode one image file or raise ImageSkip with no_image / missing_file / too_large / corrupt."""
    if is_missing(path):
        raise ImageSkip("no_image")
    path = Path(path)
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


class ManifestImages(Dataset):
    """Decodes and transforms images in DataLoader workers; a bad file becomes a skip record, not a crash."""

    def __init__(self, paths: list[Any], transform, max_pixels: int | None = None) -> None:
        self.paths, self.transform, self.max_pixels = paths, transform, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, ImageSkip | None]:
        try:
            image = open_image(self.paths[i], self.max_pixels)
        except ImageSkip as skip:
            return i, None, skip
        try:
            return i, self.transform(image), None
        except Exception as err:  # a decodable image the transform cannot take (e.g. 0 pixels wide)
            return i, None, ImageSkip("corrupt", f"{self.paths[i]}: {type(err).__name__}: {err}")


def collate(batch: list[tuple[int, torch.Tensor | None, ImageSkip | None]]):
    index = [i for i, _, _ in batch]
    tensors = [x for _, x, _ in batch if x is not None]
    skips = {i: skip for i, _, skip in batch if skip is not None}
    return index, (torch.stack(tensors) if tensors else None), skips


def extract_image(
    manifest: Manifest,
    out_path: str | os.PathLike,
    params: ImageParams,
    device: str = "auto",
    batch_size: int = 32,
    num_workers: int = 2,
    max_pixels: int | None = None,
    image_root: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write one ``dim``-vector per item with a readable image to the ragged store ``out_path``.

    Items without one get zero elements and are counted in the summary. An interrupted run resumes
    from the committed items of ``out_path``'s partial file. ``max_pixels`` also refuses images
    PIL itself would still open; relative image paths are taken from ``image_root``.
    """
    device = resolve_device(device)
    backbone: ImageBackbone = load_image_backbone(params.model, device, image_size=params.image_size)
    writer = RaggedWriter(out_path, extractor=EXTRACTOR, dim=backbone.dim, dtype=params.dtype, model=params.model,
                          params=dataclasses.asdict(params), resume=True)
    tally = RunTally(device)
    frame = manifest.frame
    paths = [_resolve(p, image_root) for p in frame["image"]]
    # A resumed item with no element must be counted again; finding out why costs a decode at most.
    row = {item_id: i for i, item_id in enumerate(frame["id"])}
    for item_id in empty_done_ids(writer) & row.keys():
        try:
            open_image(paths[row[item_id]], max_pixels)
        except ImageSkip as skip:
            tally.skip(item_id, skip.reason, skip.detail)
    todo = [i for i, item_id in enumerate(frame["id"]) if item_id not in writer.done_ids]
    loader = DataLoader(ManifestImages([paths[i] for i in todo], backbone.transform, max_pixels),
                        batch_size=batch_size, num_workers=num_workers, collate_fn=collate,
                        pin_memory=device.type == "cuda")
    try:
        with tqdm(total=len(todo), unit="img", desc=f"image {params.model}", disable=not progress) as bar:
            for index, x, skips in loader:
                features = iter(backbone.features(x).cpu().numpy()) if x is not None else iter(())
                for j in index:
                    item_id = str(frame["id"].iat[todo[j]])
                    if j in skips:
                        tally.skip(item_id, skips[j].reason, skips[j].detail)
                        writer.add(item_id, np.zeros((0, backbone.dim), np.float32))
                    else:
                        writer.add(item_id, next(features)[None])
                    tally.processed += 1
                bar.update(len(index))
    except BaseException:
        writer.abort()
        raise
    summary = tally.summary(writer)
    writer.close(**summary)
    return summary


def _resolve(path: Any, root: str | os.PathLike | None) -> Any:
    if is_missing(path) or root is None:
        return path
    return str(Path(root) / path)  # an absolute path stays as it is
