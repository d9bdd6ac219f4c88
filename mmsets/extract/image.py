"""Whole-image extractor, WSL(i) in DMMS: one CNN vector per item that has a readable image."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from mmsets.data.manifest import Manifest
from mmsets.extract.backbones import ImageBackbone, load_image_backbone
from mmsets.extract.common import DTYPES, ParamsError, RunTally, check_choice, params_from_dict, resolve_device
# ImageSkip and open_image lived here first; callers still import them from this module
from mmsets.extract.per_image import Elements, ImageSkip, open_image, run_per_image  # noqa: F401
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
        check_backbone_params("image params", self)


def check_backbone_params(where: str, params: Any) -> None:
    """``model``, ``image_size`` and ``dtype`` of the image CNN (the bbox extractor's too)."""
    if not params.model:
        raise ParamsError(f"{where}.model: must name a model")
    if params.image_size is not None and params.image_size < 16:
        raise ParamsError(f"{where}.image_size: {params.image_size} is below 16 pixels")
    check_choice(f"{where}.dtype", params.dtype, DTYPES)


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

    def embed(x: torch.Tensor) -> list[Elements]:
        return [Elements(v[None]) for v in backbone.features(x).cpu().numpy()]

    run_per_image(manifest, writer, tally, embed, desc=f"image {params.model}", transform=backbone.transform,
                  stack=True, pin_memory=device.type == "cuda", batch_size=batch_size, num_workers=num_workers,
                  max_pixels=max_pixels, image_root=image_root, progress=progress)
    return tally.finish(writer)
