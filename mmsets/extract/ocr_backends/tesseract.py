"""Tesseract 5 (Debian's tesseract-ocr) through pytesseract: word boxes and confidences from image_to_data."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from mmsets.plan.errors import ParamsError
from mmsets.extract.ocr_backends import OCRError, OCRResult, read_each
from mmsets.listing import listed

WORD_LEVEL = 5
INSTALL = "apt-get install -y tesseract-ocr tesseract-ocr-eng; pip install pytesseract"


class Tesseract:
    """``psm`` is Tesseract's page segmentation mode: 11 (sparse text) suits posters, 3 (automatic) pages.

    ``threads`` tesseract processes run at once, each on one thread: on small images OpenMP's own
    threads cost more than they give (twice the images per second here on 2 cores with one each).
    """

    name = "tesseract"
    device = "cpu"

    def __init__(self, lang: str | None = None, psm: int = 11, threads: int = 1, timeout: float = 60,
                 **_: object) -> None:
        try:
            import pytesseract
        except ImportError:
            raise OCRError(f"ocr backend 'tesseract' needs pytesseract and the tesseract program: {INSTALL}") from None
        self.pytesseract = pytesseract
        try:
            self.version = str(pytesseract.get_tesseract_version())
            installed = set(pytesseract.get_languages())
        except pytesseract.TesseractNotFoundError:
            raise OCRError(f"ocr backend 'tesseract': the tesseract program is not installed: {INSTALL}") from None
        self.lang = lang or "eng"
        missing = sorted(set(self.lang.split("+")) - installed)
        if missing:
            raise ParamsError(f"ocr params.lang: tesseract has no data for {missing} (installed: "
                              f"{listed(sorted(installed))}); e.g. apt-get install tesseract-ocr-{missing[0]}")
        if not 0 <= psm <= 13:
            raise ParamsError(f"ocr params.psm: {psm} is not a tesseract page segmentation mode (0-13)")
        self.config = f"--psm {psm}"
        self.timeout = timeout
        self.threads = max(1, threads)
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # read by each tesseract process; a user's setting wins

    def read(self, images: list[Image.Image]) -> list[OCRResult]:
        if self.threads == 1 or len(images) == 1:
            return read_each(images, self.read_one)
        with ThreadPoolExecutor(self.threads) as pool:  # each thread waits on its own tesseract process
            return [r for (r,) in pool.map(lambda im: read_each([im], self.read_one), images)]

    def read_one(self, image: Image.Image) -> OCRResult:
        d = self.pytesseract.image_to_data(image, lang=self.lang, config=self.config, timeout=self.timeout,
                                           output_type=self.pytesseract.Output.DICT)
        # Rows come block by block, line by line: reading order. Only word rows carry text and a confidence.
        keep = [i for i, level in enumerate(d["level"])
                if level == WORD_LEVEL and str(d["text"][i]).strip() and float(d["conf"][i]) >= 0]
        return OCRResult(
            words=[str(d["text"][i]).strip() for i in keep],
            boxes=[[d["left"][i], d["top"][i], d["left"][i] + d["width"][i], d["top"][i] + d["height"][i]]
                   for i in keep],
            conf=[float(d["conf"][i]) / 100 for i in keep],
        )
