"""Face extractor, Face(i) in DMMS (Sec. 4): MTCNN finds the faces, a face-recognition net embeds each one.

The paper embeds MTCNN's face boxes with SE-ResNet-50-256D trained on VGGFace2; the embedders users get instead
are in :mod:`mmsets.extract.face_embedders` (the README's extractor table lists the offline defaults).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from mmsets.data.manifest import Manifest
from mmsets.extract.face_embedders import EMBEDDERS, FACENET_SIZE, INCEPTION_RESNET, RENAMED, load_face_embedder
from mmsets.extract.fingerprints import item_inputs
from mmsets.extract.item_loop import Elements, ImageSkip
from mmsets.extract.params import DTYPES, WEIGHTS, check_choice
from mmsets.extract.per_image import run_per_image
from mmsets.extract.tally import RunTally
from mmsets.plan.errors import ParamsError
from mmsets.runtime import Runtime, resolve_device
from mmsets.store import RaggedWriter

EXTRACTOR = "faces"
FIELDS = {"boxes": ((4,), "float32"), "prob": ((), "float32")}


# ---------------------------------------------------------------------------------------------- params

@dataclass
class FacesParams:
    embedder: str = "casia-webface-offline"  # the paper's kind of model: "vggface2" (downloads on first use)
    weights_path: str | None = None  # InceptionResnetV1 state dict to use instead of the download
    min_face_size: int = 20  # pixels, at the detector's image size
    thresholds: list[float] = field(default_factory=lambda: [0.6, 0.7, 0.7])  # P-, R-, O-net
    min_prob: float = 0.9
    max_faces: int = 10  # DMMS keeps at most 10 detections per image; the most probable ones
    max_image_size: int = 1024  # longer side the detector sees; larger images are scaled down for it
    margin: int = 14  # pixels of the 160-pixel FaceNet crop added around the box (facenet-pytorch's unit)
    dtype: str = "float16"
    weights: str = "pretrained"  # "random": vggface2/casia-webface's InceptionResnetV1 with seeded random weights

    def __post_init__(self) -> None:
        self.thresholds = [float(t) for t in self.thresholds]
        if self.embedder in RENAMED:
            raise ParamsError(f"faces params.embedder: {self.embedder!r} is now called {RENAMED[self.embedder]!r}")
        check_choice("faces params.embedder", self.embedder, EMBEDDERS)
        if self.weights_path is not None and self.embedder not in INCEPTION_RESNET:
            raise ParamsError(f"faces params.weights_path: only for the embedders {list(INCEPTION_RESNET)}, "
                              f"not {self.embedder!r}")
        check_choice("faces params.weights", self.weights, WEIGHTS)
        if self.weights == "random" and self.embedder not in INCEPTION_RESNET:
            raise ParamsError(f"faces params.weights: 'random' builds the InceptionResnetV1 of the embedders "
                              f"{list(INCEPTION_RESNET)}, not {self.embedder!r}")
        if self.weights == "random" and self.weights_path is not None:
            raise ParamsError("faces params.weights: 'random' and a weights_path exclude each other")
        if len(self.thresholds) != 3 or not all(0 < t <= 1 for t in self.thresholds):
            raise ParamsError(f"faces params.thresholds: {self.thresholds} must be 3 numbers in (0, 1]")
        if not 0 <= self.min_prob <= 1:
            raise ParamsError(f"faces params.min_prob: {self.min_prob} is not in [0, 1]")
        if self.max_faces < 1:
            raise ParamsError(f"faces params.max_faces: {self.max_faces} is below 1")
        if self.min_face_size < 12:  # MTCNN's P-net window
            raise ParamsError(f"faces params.min_face_size: {self.min_face_size} is below 12 pixels")
        if self.max_image_size < 32:
            raise ParamsError(f"faces params.max_image_size: {self.max_image_size} is below 32 pixels")
        if self.max_image_size < self.min_face_size:
            raise ParamsError(f"faces params.max_image_size: {self.max_image_size} is below min_face_size")
        if not 0 <= self.margin < FACENET_SIZE:
            raise ParamsError(f"faces params.margin: {self.margin} is not in [0, {FACENET_SIZE})")
        check_choice("faces params.dtype", self.dtype, DTYPES)


# ------------------------------------------------------------------------------------------- detection

@dataclass
class Faces:
    """One image's faces, most probable first: boxes (k, 4) x0 y0 x1 y1, prob (k,), landmarks (k, 5, 2)."""

    boxes: np.ndarray
    prob: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def none(cls) -> "Faces":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.prob)


class FaceDetector:
    """MTCNN (Zhang et al. 2016) over batches; facenet-pytorch batches only images of one size."""

    def __init__(self, params: FacesParams, device: torch.device) -> None:
        from facenet_pytorch import MTCNN

        self.mtcnn = MTCNN(min_face_size=params.min_face_size, thresholds=params.thresholds, keep_all=True,
                           select_largest=False, device=device)
        self.min_face_size, self.min_prob, self.max_faces = params.min_face_size, params.min_prob, params.max_faces

    def __call__(self, images: list[np.ndarray]) -> list[Faces | ImageSkip]:
        """Faces of each (h, w, 3) uint8 RGB image in its own pixels, or why the detector failed on it."""
        found: list[Faces | ImageSkip] = [Faces.none()] * len(images)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            if min(image.shape[:2]) >= self.min_face_size:  # smaller ones leave MTCNN an empty image pyramid
                by_size.setdefault(image.shape, []).append(i)
        for index in by_size.values():
            try:
                answers = self._detect(np.stack([images[i] for i in index]))
            except Exception as err:
                if len(index) == 1:  # an image MTCNN itself trips over: that image's answer, not the run's
                    answers = [ImageSkip("detector_error", f"{type(err).__name__}: {err}")]
                else:  # find which image it was
                    answers = [self([images[i]])[0] for i in index]
            for i, answer in zip(index, answers):
                found[i] = answer
        return found

    def _detect(self, batch: np.ndarray) -> list[Faces]:
        boxes, probs, points = self.mtcnn.detect(torch.from_numpy(batch), landmarks=True)
        return [self._select(b, p, marks) for b, p, marks in zip(boxes, probs, points)]

    def _select(self, boxes: Any, probs: Any, landmarks: Any) -> Faces:
        if boxes is None:
            return Faces.none()
        probs = np.asarray(probs, np.float32)
        keep = np.flatnonzero(probs >= self.min_prob)
        keep = keep[np.argsort(-probs[keep], kind="stable")][: self.max_faces]
        return Faces(np.asarray(boxes, np.float32)[keep].reshape(-1, 4), probs[keep],
                     np.asarray(landmarks, np.float32)[keep].reshape(-1, 5, 2))


# ------------------------------------------------------------------------------------------- extractor

def detector_input(image: Image.Image, max_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The image as an array, and a copy scaled down to ``max_size`` for the detector when it is larger."""
    scale = max_size / max(image.size)
    small = None
    if scale < 1:
        small = np.asarray(image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                        Image.BILINEAR))
    return np.asarray(image), small


def extract_faces(manifest: Manifest, out_path: str | os.PathLike, params: FacesParams,
                  runtime: Runtime | None = None) -> dict[str, Any]:
    """Write the faces of each item's image to the ragged store ``out_path``: one embedding per face with its
    ``boxes`` (x0, y0, x1, y1 in the original image's pixels) and detection ``prob``.

    An image without faces is an ordinary answer with zero elements, counted as ``no_face``; an unreadable
    one also has zero elements and is counted under ``skipped``. An interrupted run resumes.
    """
    runtime = runtime or Runtime()
    device = resolve_device(runtime.device)
    detector = FaceDetector(params, device)
    embedder = load_face_embedder(params.embedder, device, weights_path=params.weights_path, margin=params.margin,
                                  batch_size=runtime.batch_size, weights=params.weights)
    writer = RaggedWriter(out_path, extractor=EXTRACTOR, dim=embedder.dim, dtype=params.dtype, model=embedder.name,
                          params=dataclasses.asdict(params), fields=FIELDS, attrs={"detector": "mtcnn"}, resume=True,
                          inputs=item_inputs(manifest, EXTRACTOR, params))
    tally = RunTally(device)

    def embed(images: list[tuple[np.ndarray, np.ndarray | None]]) -> list[Elements]:
        found = _detect(detector, images)
        crops = [[] if isinstance(faces, ImageSkip) else embedder.crops(image, faces.boxes, faces.landmarks)
                 for (image, _), faces in zip(images, found)]
        vectors = np.split(embedder.embed_crops([c for item in crops for c in item]),
                           np.cumsum([len(item) for item in crops])[:-1])
        return [Elements(data, error=(faces.reason, faces.detail)) if isinstance(faces, ImageSkip) else
                Elements(data, {"boxes": faces.boxes, "prob": faces.prob}) for faces, data in zip(found, vectors)]

    run_per_image(manifest, writer, tally, embed, runtime, desc=f"faces {params.embedder}", empty_reason="no_face",
                  transform=functools.partial(detector_input, max_size=params.max_image_size))
    # Finding no face is an answer, not a skip: the summary counts it apart.
    return tally.finish(writer, no_face=tally.skipped.pop("no_face", 0))


def _detect(detector: FaceDetector, images: list[tuple[np.ndarray, np.ndarray | None]]) -> list[Faces | ImageSkip]:
    """Faces of each (image, smaller copy or None), boxes clipped to the image and, like landmarks, in its
    pixels; or why the detector failed on it."""
    found = detector([image if small is None else small for image, small in images])
    out = []
    for (image, small), faces in zip(images, found):
        if not isinstance(faces, ImageSkip):
            height, width = image.shape[:2]
            if small is not None:
                scale = np.array([width / small.shape[1], height / small.shape[0]], np.float32)
                faces = Faces(faces.boxes * np.tile(scale, 2), faces.prob, faces.landmarks * scale)
            faces = Faces(np.clip(faces.boxes, 0, [width, height, width, height]).astype(np.float32), faces.prob,
                          faces.landmarks)
        out.append(faces)
    return out
