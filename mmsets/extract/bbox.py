"""Box-embedding extractor, WSL(bbox) in DMMS: each detected object's crop through the image CNN.

The paper (Sec. 4.2) takes the boxes Faster R-CNN keeps and extracts "the WSL embeddings of the
associated bounding boxes". Here the boxes come from the ``objects`` store (``params.objects_store``)
and every crop goes through the very code of the ``image`` extractor (``load_image_backbone``, its
``transform`` in DataLoader workers, its ``features`` in batches), so a crop's vector is what
``embed_images`` and the image extractor give for that crop as a picture of its own.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from mmsets.data.manifest import Manifest
from mmsets.extract.backbones import ImageBackbone, load_image_backbone
from mmsets.extract.fingerprints import item_inputs
from mmsets.extract.image import check_backbone_params
from mmsets.extract.item_loop import Elements, ImageSkip, retry_input, run_items
from mmsets.extract.per_image import image_paths, open_image
from mmsets.extract.tally import RunTally
from mmsets.plan.errors import ParamsError
from mmsets.runtime import Runtime, resolve_device
from mmsets.store import RaggedStore, RaggedWriter, StoreError

EXTRACTOR = "bbox"
FIELDS = {"boxes": ((4,), "float32"), "scores": ((), "float32"), "label": ((), "str")}


@dataclass
class BBoxParams:
    objects_store: str = ""  # the objects extractor's store: where the boxes come from
    model: str = "efficientnet_lite0"  # as the image extractor's
    image_size: int | None = None  # None: the model's own input size
    dtype: str = "float16"
    context: float = 0.0  # widen each box by this fraction of its width/height on every side
    min_box_size: int = 2  # a crop narrower or lower than this many pixels (after clamping) is skipped
    weights: str = "pretrained"  # as the image extractor's

    def __post_init__(self) -> None:
        if not self.objects_store:
            raise ParamsError("bbox params.objects_store: give the path of the objects extractor's store")
        check_backbone_params("bbox params", self)
        if not 0.0 <= self.context <= 1.0:
            raise ParamsError(f"bbox params.context: {self.context} is not in [0, 1]")
        if self.min_box_size < 1:
            raise ParamsError(f"bbox params.min_box_size: {self.min_box_size} is below 1")


def crop_box(box: np.ndarray, size: tuple[int, int], context: float = 0.0,
             min_box_size: int = 2) -> tuple[int, int, int, int] | None:
    """Pixel rectangle (left, top, right, bottom) covering ``box`` (xyxy) widened by ``context``, inside
    an image of ``size`` (width, height); None when nothing of at least ``min_box_size`` pixels is left."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(map(math.isfinite, (x0, y0, x1, y1))):
        return None
    pad_x, pad_y = context * (x1 - x0), context * (y1 - y0)
    width, height = size
    left, top = max(0, math.floor(x0 - pad_x)), max(0, math.floor(y0 - pad_y))
    right, bottom = min(width, math.ceil(x1 + pad_x)), min(height, math.ceil(y1 + pad_y))
    if right - left < min_box_size or bottom - top < min_box_size:
        return None
    return left, top, right, bottom


class ItemCrops(Dataset):
    """An item's boxes cut out of its image and through the CNN's transform, in a DataLoader worker.

    Gives (manifest index, crops (k, 3, H, W) or None, indices of the boxes kept), or raises ImageSkip;
    an item without boxes (``absent`` ones, index -> detail, are not in the objects store) is not decoded.
    """

    def __init__(self, paths: list[Any], boxes: list[np.ndarray], absent: dict[int, str],
                 transform: Callable[[Image.Image], torch.Tensor], context: float, min_box_size: int,
                 max_pixels: int | None = None) -> None:
        self.paths, self.boxes, self.absent, self.transform = paths, boxes, absent, transform
        self.context, self.min_box_size, self.max_pixels = context, min_box_size, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, list[int]]:
        if i in self.absent:
            raise ImageSkip("not_in_objects_store", self.absent[i])
        if not len(self.boxes[i]):
            raise ImageSkip("no_boxes")
        image = open_image(self.paths[i], self.max_pixels)  # RGB already, as embed_images' to_rgb makes it
        crops, kept = [], []
        for j, box in enumerate(self.boxes[i]):
            rect = crop_box(box, image.size, self.context, self.min_box_size)
            if rect is not None:
                crops.append(self.transform(image.crop(rect)))
                kept.append(j)
        return i, (torch.stack(crops) if crops else None), kept


def open_objects_store(path: str | os.PathLike) -> RaggedStore:
    """The objects store, or a ParamsError naming ``bbox params.objects_store``."""
    if not Path(path).is_file():
        raise ParamsError(f"bbox params.objects_store: {str(path)!r} does not exist (run the objects extractor first)")
    try:
        store = RaggedStore(path)
    except StoreError as err:
        raise ParamsError(f"bbox params.objects_store: {err}") from None
    missing = {"boxes", "scores", "label"} - set(store.fields)
    if missing:
        store.close()
        raise ParamsError(f"bbox params.objects_store: {str(path)!r} has no per-element {sorted(missing)}; "
                          "is it an objects store?")
    return store


def extract_bbox(manifest: Manifest, out_path: str | os.PathLike, params: BBoxParams,
                 runtime: Runtime | None = None) -> dict[str, Any]:
    """Write one image-CNN vector per box of the objects store to the ragged store ``out_path``.

    Per-element fields ``boxes``, ``scores`` and ``label`` are copied from the objects store.
    An item gets zero elements when it has no box ('no_boxes'), is not in the objects store
    ('not_in_objects_store'), its image cannot be read (the image extractor's reasons) or all its
    boxes are degenerate ('degenerate_boxes'; the summary also counts skipped boxes). ``runtime.batch_size``
    counts crops per forward pass. Resumes like the image extractor.
    """
    runtime = runtime or Runtime()
    ids = [str(i) for i in manifest.frame["id"]]
    with open_objects_store(params.objects_store) as objects:
        present = [i for i in ids if i in objects]
        found = dict(zip(present, zip(*(objects.get(present, f) for f in ("boxes", "scores", "label"))))) \
            if present else {}
        # Recorded, and part of the resume check: boxes of a re-run objects extractor start this store over.
        source = {"objects_model": str(objects.attrs.get("model", "")), "objects_params": objects.params}
    device = resolve_device(runtime.device)
    backbone = load_image_backbone(params.model, device, image_size=params.image_size,
                                   pretrained=params.weights == "pretrained")
    writer = RaggedWriter(out_path, extractor=EXTRACTOR, dim=backbone.dim, dtype=params.dtype, model=params.model,
                          params=dataclasses.asdict(params), fields=FIELDS, attrs=source, resume=True,
                          inputs=item_inputs(manifest, EXTRACTOR, params))
    tally = RunTally(device)
    empty = np.zeros((0, 4), np.float32)
    boxes = [found[i][0] if i in found else empty for i in ids]
    absent = {i: f"{item_id} is not in {params.objects_store}" for i, item_id in enumerate(ids)
              if item_id not in found}
    dataset = ItemCrops(image_paths(manifest, runtime.image_root), boxes, absent, backbone.transform, params.context,
                        params.min_box_size, runtime.max_pixels)
    degenerate = 0

    def none_kept(i: int) -> tuple[str, str]:
        return "degenerate_boxes", f"all {len(boxes[i])} boxes are under {params.min_box_size} pixels"

    def why_empty(i: int) -> tuple[str, str | None]:
        reason, detail = retry_input(dataset, None, i)
        return none_kept(i) if reason is None else (reason, detail)

    def embed(batch: list[tuple[int, torch.Tensor | None, list[int]]]) -> list[Elements]:
        nonlocal degenerate
        crops = [c for _, c, _ in batch if c is not None]
        vectors = _features(backbone, torch.cat(crops), runtime.batch_size) if crops else np.zeros((0, backbone.dim))
        out, row = [], 0
        for i, _, kept in batch:
            kept, k = np.asarray(kept, np.int64), len(kept)
            degenerate += len(boxes[i]) - k
            _, scores, labels = found[ids[i]]
            fields = {"boxes": boxes[i][kept], "scores": scores[kept], "label": list(labels[kept])}
            out.append(Elements(vectors[row:row + k], fields, error=None if k else none_kept(i)))
            row += k
        return out

    # Each item brings several crops (up to the objects' max_boxes): a loader batch of batch_size // 4 items keeps
    # the transformed crops in flight between workers and model to a few forward passes.
    run_items(ids, dataset, writer, tally, embed, runtime.replace(batch_size=max(1, runtime.batch_size // 4)),
              desc=f"bbox {params.model}", why_empty=why_empty, unit="item", pin_memory=device.type == "cuda")
    return tally.finish(writer, degenerate_boxes=degenerate)


def _features(backbone: ImageBackbone, crops: torch.Tensor, batch_size: int) -> np.ndarray:
    return np.concatenate([backbone.features(crops[start:start + batch_size]).cpu().numpy()
                           for start in range(0, len(crops), batch_size)])
