"""Image labels as text: the top ImageNet classes of an image classifier per image.

An offline stand-in for Cloud Vision's label detection, which DM2S2 reads as a token sequence;
``backend="cloud_vision"`` asks the service itself (LABEL_DETECTION) through the OCR's client code.
One element per label: data (k, 1) float32 = probability (or the service's score), field ``text`` = name.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from PIL import Image

from mmsets.data.manifest import Manifest
from mmsets.extract.autocast import autocast
from mmsets.extract.backbones import ImageBackbone, load_image_backbone
from mmsets.extract.fingerprints import item_inputs
from mmsets.extract.item_loop import Elements
from mmsets.extract.params import WEIGHTS, check_choice
from mmsets.extract.per_image import run_per_image
from mmsets.extract.tally import RunTally
from mmsets.plan.errors import ParamsError
from mmsets.runtime import Runtime, resolve_device
from mmsets.store import RaggedWriter

EXTRACTOR = "labels"
BACKENDS = ("imagenet", "cloud_vision")
IMAGENET_CLASSES = 1000


@dataclass
class LabelsParams:
    backend: str = "imagenet"  # "imagenet": a local ImageNet classifier; "cloud_vision": the service's labels
    model: str = "efficientnet_lite0"  # imagenet backend: a model of backbones.load_image_backbone
    top_k: int = 5
    min_prob: float = 0.0  # labels scored below it are dropped (an image may then have none: "no_label")
    weights: str = "pretrained"  # imagenet backend: "random", the same classifier with seeded random weights

    def __post_init__(self) -> None:
        check_choice("labels params.backend", self.backend, BACKENDS)
        if not self.model:
            raise ParamsError("labels params.model: must name a model")
        check_choice("labels params.weights", self.weights, WEIGHTS)
        if self.weights != "pretrained" and self.backend != "imagenet":
            raise ParamsError(f"labels params.weights: {self.weights!r} is for the imagenet backend, "
                              f"not {self.backend!r}")
        if self.top_k < 1:
            raise ParamsError(f"labels params.top_k: {self.top_k} is below 1")
        if not 0 <= self.min_prob <= 1:
            raise ParamsError(f"labels params.min_prob: {self.min_prob} is not in [0, 1]")


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class descriptions in index order ("Egyptian cat", "tabby, tabby cat", ...)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


def load_classifier(model: str, device: str | torch.device = "cpu", *, pretrained: bool = True) -> ImageBackbone:
    backbone = load_image_backbone(model, device, head=True, pretrained=pretrained)
    if getattr(backbone.model, "num_classes", 0) != IMAGENET_CLASSES:
        raise ParamsError(f"labels params.model: {model!r} has no ImageNet-1k classifier "
                          f"({getattr(backbone.model, 'num_classes', 0)} classes)")
    return backbone


@torch.inference_mode()
def classify(backbone: ImageBackbone, x: torch.Tensor) -> torch.Tensor:
    """(n, 1000) class probabilities of a batch the backbone's transform made."""
    with autocast(backbone.device):
        logits = backbone.model(backbone.inputs(x))
    return logits.float().softmax(-1).cpu()


def top_labels(probs: torch.Tensor, top_k: int, min_prob: float) -> list[Elements]:
    names = imagenet_class_names()
    p, idx = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [_elements([names[i] for i in ii.tolist()], pp.numpy(), min_prob) for pp, ii in zip(p, idx)]


def _elements(names: list[str], scores: np.ndarray, min_prob: float) -> Elements:
    keep = scores >= min_prob
    return Elements(scores[keep, None].astype(np.float32), {"text": [n for n, k in zip(names, keep) if k]})


def extract_labels(manifest: Manifest, out_path: str | os.PathLike, params: LabelsParams,
                   runtime: Runtime | None = None, *, engine: Any = None) -> dict[str, Any]:
    """Write up to ``top_k`` labels per item image to the ragged store ``out_path``, best first.

    ``engine`` replaces the backend ``params`` would build: a loaded classifier (ImageBackbone with
    its head) or a ``CloudVision`` client.
    """
    runtime = runtime or Runtime()
    fields = {"text": ((), "str")}
    if params.backend == "cloud_vision":
        from mmsets.extract.ocr_backends.cloud_vision import CloudVision

        service = engine or CloudVision()
        writer = RaggedWriter(out_path, extractor=EXTRACTOR, dim=1, dtype="float32", model=service.name,
                              params=dataclasses.asdict(params), fields=fields,
                              attrs={"backend": service.name, "backend_version": service.version}, resume=True,
                              inputs=item_inputs(manifest, EXTRACTOR, params))
        tally = RunTally(service.device)

        def ask(images: list[Image.Image]) -> list[Elements]:
            return [Elements(np.zeros((0, 1), np.float32), error=r.error) if r.error else
                    _elements(r.names, r.scores, params.min_prob) for r in service.labels(images, params.top_k)]

        run_per_image(manifest, writer, tally, ask, runtime, desc="labels cloud_vision", empty_reason="no_label")
        return tally.finish(writer)

    backbone = engine or load_classifier(params.model, resolve_device(runtime.device),
                                         pretrained=params.weights == "pretrained")
    writer = RaggedWriter(out_path, extractor=EXTRACTOR, dim=1, dtype="float32", model=params.model,
                          params=dataclasses.asdict(params), fields=fields, resume=True,
                          inputs=item_inputs(manifest, EXTRACTOR, params))
    tally = RunTally(backbone.device)

    def predict(x: torch.Tensor) -> list[Elements]:
        return top_labels(classify(backbone, x), params.top_k, params.min_prob)

    run_per_image(manifest, writer, tally, predict, runtime, desc=f"labels {params.model}", empty_reason="no_label",
                  transform=backbone.transform, stack=True)
    return tally.finish(writer)
