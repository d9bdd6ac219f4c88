"""Whole-image extractor, WSL(i) in DMMS: one CNN vector per item that has a readable image."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import torch

from mmsets.data.manifest import Manifest
from mmsets.extract.backbones import ImageBackbone, load_image_backbone
from mmsets.extract.fingerprints import item_inputs
from mmsets.extract.item_loop import Elements
from mmsets.extract.params import DTYPES, WEIGHTS, check_choice
from mmsets.extract.per_image import run_per_image
from mmsets.extract.tally import RunTally
from mmsets.plan.errors import ParamsError
from mmsets.runtime import Runtime, resolve_device
from mmsets.store import RaggedWriter

EXTRACTOR = "image"


@dataclass
class ImageParams:
    model: str = "efficientnet_lite0"
    image_size: int | None = None  # None: the model's own input size
    dtype: str = "float16"
    weights: str = "pretrained"  # "random": the same architecture, seeded random weights (rehearsals, tests)

    def __post_init__(self) -> None:
        check_backbone_params("image params", self)


def check_backbone_params(where: str, params: Any) -> None:
    """``model``, ``image_size``, ``dtype`` and ``weights`` of the image CNN (the bbox extractor's too)."""
    if not params.model:
        raise ParamsError(f"{where}.model: must name a model")
    if params.image_size is not None and params.image_size < 32:
        raise ParamsError(f"{where}.image_size: {params.image_size} is below 32 pixels")
    check_choice(f"{where}.dtype", params.dtype, DTYPES)
    check_choice(f"{where}.weights", params.weights, WEIGHTS)


def extract_image(manifest: Manifest, out_path: str | os.PathLike, params: ImageParams,
                  runtime: Runtime | None = None) -> dict[str, Any]:
    """Write one ``dim``-vector per item with a readable image to the ragged store ``out_path``.

    Items without one get zero elements and are counted in the summary. An interrupted run resumes
    from the committed items of ``out_path``'s partial file. ``runtime.max_pixels`` also refuses images
    PIL itself would still open; relative image paths are taken from ``runtime.image_root``.
    """
    runtime = runtime or Runtime()
    device = resolve_device(runtime.device)
    backbone: ImageBackbone = load_image_backbone(params.model, device, image_size=params.image_size,
                                                  pretrained=params.weights == "pretrained")
    writer = RaggedWriter(out_path, extractor=EXTRACTOR, dim=backbone.dim, dtype=params.dtype, model=params.model,
                          params=dataclasses.asdict(params), resume=True,
                          inputs=item_inputs(manifest, EXTRACTOR, params))
    tally = RunTally(device)

    def embed(x: torch.Tensor) -> list[Elements]:
        return [Elements(v[None]) for v in backbone.features(x).cpu().numpy()]

    run_per_image(manifest, writer, tally, embed, runtime, desc=f"image {params.model}", transform=backbone.transform,
                  stack=True, pin_memory=device.type == "cuda")
    return tally.finish(writer)
