"""OCR engines behind one interface: ``read(images) -> [OCRResult]``, one result per image, words in reading order.

Backends: ``tesseract`` (Debian's tesseract-ocr), ``easyocr`` (CRAFT + CRNN, offline English models
from a PyPI wheel) and ``cloud_vision`` (Google Cloud Vision TEXT_DETECTION, as in the DM2S2 paper).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from mmsets.extract.backbones import BackboneError
from mmsets.plan.errors import ParamsError


class OCRError(BackboneError):
    """A backend that cannot run at all (not installed, no credentials): the run stops, naming the fix."""


@dataclass
class OCRResult:
    """Words of one image: ``boxes`` (k, 4) x0, y0, x1, y1 in pixels, ``conf`` (k,) in [0, 1].

    ``error`` (reason, detail) marks an image the engine or service failed on; it has no words.
    """

    words: list[str] = field(default_factory=list)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    conf: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    error: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.conf = np.asarray(self.conf, np.float32).reshape(-1)
        if not len(self.words) == len(self.boxes) == len(self.conf):
            raise ValueError(f"{len(self.words)} words, {len(self.boxes)} boxes and {len(self.conf)} confidences")

    @classmethod
    def failed(cls, reason: str, detail: str) -> "OCRResult":
        return cls(error=(reason, detail))


@runtime_checkable
class OCRBackend(Protocol):
    name: str
    version: str
    device: str

    def read(self, images: list[Image.Image]) -> list[OCRResult]: ...


# name -> (module, class); imported on use, each backend's package is optional
BACKENDS: dict[str, tuple[str, str]] = {
    "tesseract": ("mmsets.extract.ocr_backends.tesseract", "Tesseract"),
    "easyocr": ("mmsets.extract.ocr_backends.easy_ocr", "EasyOCR"),
    "cloud_vision": ("mmsets.extract.ocr_backends.cloud_vision", "CloudVision"),
}


def load_backend(name: str, **options: Any) -> OCRBackend:
    """Build backend ``name``; ``options`` are its constructor's keywords (lang, psm, model_dir, device, ...)."""
    if name not in BACKENDS:
        raise ParamsError(f"ocr backend {name!r} is unknown; known: {sorted(BACKENDS)}")
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)(**options)


def read_each(images: Sequence[Image.Image], read_one: Callable[[Image.Image], OCRResult]) -> list[OCRResult]:
    """One image at a time; an engine failing on one image fails that image only."""
    out = []
    for image in images:
        try:
            out.append(read_one(image))
        except Exception as err:  # engines raise anything on odd inputs (1-pixel images, odd aspect ratios)
            out.append(OCRResult.failed("ocr_failed", f"{type(err).__name__}: {err}"))
    return out


def split_words(box: Sequence[float], text: str, conf: float) -> tuple[list[str], list[list[float]], list[float]]:
    """Split a detected phrase into words, each taking the share of the box its characters take."""
    words = text.split()
    line = " ".join(words)
    x0, y0, x1, y1 = box
    boxes, start = [], 0
    for word in words:
        start = line.index(word, start)
        end = start + len(word)
        boxes.append([x0 + (x1 - x0) * start / len(line), y0, x0 + (x1 - x0) * end / len(line), y1])
        start = end
    return words, boxes, [conf] * len(words)


def reading_order(boxes: np.ndarray) -> np.ndarray:
    """Indices of ``boxes`` line by line from the top, each line left to right.

    A box joins the current line when its vertical centre is within half a line height of the line's.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if not len(boxes):
        return np.zeros(0, np.int64)
    centre = (boxes[:, 1] + boxes[:, 3]) / 2
    height = np.maximum(boxes[:, 3] - boxes[:, 1], 1)
    lines: list[list[int]] = []
    for i in np.argsort(centre, kind="stable"):
        if lines:
            line = lines[-1]
            if abs(centre[i] - centre[line].mean()) <= 0.5 * np.median(height[line]):
                line.append(int(i))
                continue
        lines.append([int(i)])
    return np.array([i for line in lines for i in sorted(line, key=lambda j: boxes[j, 0])], np.int64)
