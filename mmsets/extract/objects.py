"""Object extractor, IE(obj) in DMMS: the COCO classes a Faster R-CNN finds in each image.

The paper (Sec. 4.2) runs Faster R-CNN R50-FPN trained on COCO (detectron2's 1x schedule) and keeps
detections scoring at least 0.65. Each kept box is one element: its COCO category id (an index for
an embedding table, see ``IndexEncoder``) with the box, its score and the class name as per-element
fields. The ``bbox`` extractor re-embeds these boxes (WSL(bbox)).

Two backends load the same architecture: torchvision (default; ``weights: coco`` downloads
torchvision's COCO_V1 weights, a path loads a state dict through the same code) and detectron2
(optional; the paper's own model zoo checkpoint).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from mmsets.data.manifest import Manifest
from mmsets.extract.autocast import autocast
from mmsets.extract.backbones import BackboneError
from mmsets.extract.fingerprints import item_inputs
from mmsets.extract.item_loop import Elements
from mmsets.extract.params import check_choice
from mmsets.extract.per_image import run_per_image
from mmsets.extract.tally import RunTally
from mmsets.plan.errors import ParamsError
from mmsets.runtime import Runtime, resolve_device
from mmsets.store import RaggedWriter

log = logging.getLogger(__name__)

EXTRACTOR = "objects"
BACKENDS = ("torchvision", "detectron2")
ARCH = "faster_rcnn_R_50_FPN"
DETECTRON2_CONFIG = "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"  # the paper's model zoo entry
FIELDS = {"boxes": ((4,), "float32"), "scores": ((), "float32"), "label": ((), "str")}


@dataclass
class ObjectsParams:
    backend: str = "torchvision"
    weights: str = "coco"  # "coco": the backend's COCO weights (download); "random": offline stand-in; else a file
    score_threshold: float = 0.65  # DMMS Sec. 4.2
    max_boxes: int = 10
    min_size: int = 800  # shorter image side at the detector's input (torchvision/detectron2: 800)
    max_size: int = 1333  # cap on the longer side

    def __post_init__(self) -> None:
        check_choice("objects params.backend", self.backend, BACKENDS)
        if not self.weights:
            raise ParamsError("objects params.weights: use 'coco' or the path of a checkpoint file")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ParamsError(f"objects params.score_threshold: {self.score_threshold} is not in [0, 1]")
        if self.max_boxes < 1:
            raise ParamsError(f"objects params.max_boxes: {self.max_boxes} is below 1")
        if self.min_size < 32 or self.max_size < self.min_size:
            raise ParamsError(f"objects params.min_size/max_size: need 32 <= min_size <= max_size, "
                              f"got {self.min_size}/{self.max_size}")


# ----------------------------------------------------------------------------------------- categories

def coco_categories() -> list[str]:
    """The 91 names indexed by COCO category id: '__background__' at 0 and 'N/A' for the 11 unused ids."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    return list(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])


def contiguous_to_coco_id() -> np.ndarray:
    """detectron2 numbers the 80 used classes 0..79; the store keeps COCO's own ids (1..90, with gaps)."""
    return np.array([k for k, name in enumerate(coco_categories()) if name not in ("__background__", "N/A")])


# ------------------------------------------------------------------------------------------- detectors

@dataclass
class Detections:
    """One image's detections, best first: boxes (k, 4) xyxy in input pixels, scores (k,), COCO ids (k,)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def keep_top(det: Detections, score_threshold: float, max_boxes: int) -> Detections:
    """At most ``max_boxes`` detections scoring ``>= score_threshold``, highest score first."""
    order = np.argsort(-det.scores, kind="stable")
    order = order[det.scores[order] >= score_threshold][:max_boxes]
    return Detections(det.boxes[order].astype(np.float32).reshape(-1, 4), det.scores[order].astype(np.float32),
                      det.labels[order].astype(np.int64))


@dataclass
class Detector:
    """``detect(images)``: uint8 RGB (3, H, W) tensors of any size -> Detections in original pixels."""

    name: str
    model: nn.Module
    run: Callable[[nn.Module, list[Tensor], torch.device], list[Detections]]
    device: torch.device

    @torch.inference_mode()
    def detect(self, images: list[Tensor]) -> list[Detections]:
        if not images:
            return []
        with autocast(self.device):
            return self.run(self.model, images, self.device)


def load_detector(params: ObjectsParams, device: str | torch.device = "cpu") -> Detector:
    device = torch.device(device)
    if params.backend == "torchvision":
        model, run = _torchvision_model(params), _run_torchvision
    else:
        model, run = _detectron2_model(params), _run_detectron2
    return Detector(f"{params.backend}:{ARCH}", model.eval().to(device), run, device)


def _torchvision_model(params: ObjectsParams) -> nn.Module:
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights, fasterrcnn_resnet50_fpn

    # torchvision applies threshold and cap before returning; keep_top applies them again for every backend
    options = dict(min_size=params.min_size, max_size=params.max_size, box_score_thresh=params.score_threshold,
                   box_detections_per_img=params.max_boxes)
    if params.weights == "coco":
        try:
            return fasterrcnn_resnet50_fpn(weights=FasterRCNN_ResNet50_FPN_Weights.COCO_V1, **options)
        except OSError as err:  # no network and not in the torch hub cache ($TORCH_HOME)
            raise BackboneError(
                f"objects params.weights='coco': torchvision's COCO weights could not be fetched ({err}); "
                "download them where there is network, then set objects params.weights to the file's path"
            ) from err
    if params.weights == "random":
        # No COCO detector installs without a model hub: this seeded stand-in runs the same code, and
        # its boxes are arbitrary regions of the image (bbox still embeds real crops of it).
        log.warning("objects: randomly initialised detector (weights: random); boxes and classes are arbitrary")
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91, **options)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91, **options)
    state = _load_checkpoint(params.weights)
    if isinstance(state.get("model"), Mapping):  # torchvision reference scripts save {"model": ..., "optimizer": ...}
        state = state["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise BackboneError(f"objects params.weights={params.weights!r}: not a fasterrcnn_resnet50_fpn "
                            f"state dict with 91 COCO classes ({str(err).splitlines()[0]} ...)") from err
    return model


def _load_checkpoint(path: str) -> dict:
    if not Path(path).is_file():
        raise ParamsError(f"objects params.weights: {path!r} is neither 'coco' nor an existing file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, a zip that is not a torch file, ...
        raise BackboneError(f"objects params.weights={path!r}: not a loadable torch checkpoint ({err})") from err
    if not isinstance(state, Mapping):
        raise BackboneError(f"objects params.weights={path!r}: holds a {type(state).__name__}, not a state dict")
    return dict(state)


def _run_torchvision(model: nn.Module, images: list[Tensor], device: torch.device) -> list[Detections]:
    # The model resizes to min_size/max_size itself and maps boxes back to each input's own size.
    outputs = model([im.to(device, non_blocking=True).float().div_(255) for im in images])
    return [Detections(o["boxes"].float().cpu().numpy(), o["scores"].float().cpu().numpy(),
                       o["labels"].cpu().numpy()) for o in outputs]


def _detectron2_model(params: ObjectsParams) -> nn.Module:
    try:
        from detectron2 import model_zoo
        from detectron2.checkpoint import DetectionCheckpointer
        from detectron2.config import get_cfg
        from detectron2.data import transforms as T
        from detectron2.modeling import build_model
    except ImportError as err:
        raise ParamsError(
            f"objects params.backend='detectron2': detectron2 is not installed ({err}); install it "
            "(https://detectron2.readthedocs.io/en/latest/tutorials/install.html) or use backend 'torchvision'"
        ) from None
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(DETECTRON2_CONFIG))
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = params.score_threshold
    cfg.TEST.DETECTIONS_PER_IMAGE = params.max_boxes
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = params.min_size, params.max_size
    cfg.MODEL.DEVICE = "cpu"  # moved by load_detector
    if params.weights == "coco":
        weights = model_zoo.get_checkpoint_url(DETECTRON2_CONFIG)
    elif Path(params.weights).is_file():
        weights = params.weights
    else:
        raise ParamsError(f"objects params.weights: {params.weights!r} is neither 'coco' nor an existing file")
    model = build_model(cfg)
    DetectionCheckpointer(model).load(weights)
    model.resize = T.ResizeShortestEdge([params.min_size] * 2, params.max_size)
    model.input_format = cfg.INPUT.FORMAT
    model.to_coco_id = contiguous_to_coco_id()
    return model


def _run_detectron2(model: nn.Module, images: list[Tensor], device: torch.device) -> list[Detections]:
    inputs = []
    for im in images:
        h, w = im.shape[1:]
        array = im.permute(1, 2, 0).numpy()
        array = model.resize.get_transform(array).apply_image(array)
        x = torch.as_tensor(np.ascontiguousarray(array)).permute(2, 0, 1).float()  # 0..255, as DefaultPredictor
        if model.input_format == "BGR":
            x = x.flip(0)
        inputs.append({"image": x.to(device), "height": h, "width": w})  # boxes come back in h x w pixels
    out = []
    for result in model(inputs):
        inst = result["instances"].to("cpu")
        out.append(Detections(inst.pred_boxes.tensor.float().numpy(), inst.scores.float().numpy(),
                              model.to_coco_id[inst.pred_classes.numpy()]))
    return out


# ------------------------------------------------------------------------------------------- extractor

def pil_to_uint8(image) -> Tensor:
    from torchvision.transforms.functional import pil_to_tensor

    return pil_to_tensor(image)  # uint8 crosses the worker boundary at a quarter of float32's size


def extract_objects(manifest: Manifest, out_path: str | os.PathLike, params: ObjectsParams,
                    runtime: Runtime | None = None) -> dict[str, Any]:
    """Write one element per detected object to the ragged store ``out_path``.

    ``data`` (k, 1) holds each box's COCO category id as float32 (store attrs: kind 'index',
    num_embeddings 91, the names as JSON 'categories'); fields ``boxes`` (xyxy, original image
    pixels), ``scores`` and ``label``. No detection is an ordinary answer (zero elements, counted
    as 'no_objects'); unreadable images are counted as in the image extractor. Resumes like it too.
    """
    runtime = runtime or Runtime()
    device = resolve_device(runtime.device)
    detector = load_detector(params, device)
    categories = coco_categories()
    writer = RaggedWriter(out_path, extractor=EXTRACTOR, dim=1, dtype="float32", model=detector.name,
                          params=dataclasses.asdict(params), fields=FIELDS,
                          attrs={"kind": "index", "num_embeddings": len(categories), "categories": categories},
                          resume=True, inputs=item_inputs(manifest, EXTRACTOR, params))
    tally = RunTally(device)

    def detect(images: list[Tensor]) -> list[Elements]:
        found = [keep_top(det, params.score_threshold, params.max_boxes) for det in detector.detect(images)]
        return [Elements(det.labels.astype(np.float32)[:, None],
                         {"boxes": det.boxes, "scores": det.scores, "label": [categories[k] for k in det.labels]})
                for det in found]

    # Images of different sizes stay a list: the detector resizes each itself.
    run_per_image(manifest, writer, tally, detect, runtime, desc=f"objects {params.backend}",
                  empty_reason="no_objects", transform=pil_to_uint8, pin_memory=device.type == "cuda")
    return tally.finish(writer)
