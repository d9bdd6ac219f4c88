"""The extractors whose elements come from the data itself keep at most max_elements per item,
count the items cut, and the report shows the count."""

import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmsets.data.manifest import Manifest
from mmsets.extract import ParamsError, make_params
from mmsets.extract.ocr import OCRParams, extract_ocr
from mmsets.extract.ocr_backends import OCRResult
from mmsets.extract.text import DEFAULT_MAX_ELEMENTS, TextParams, extract_text
from mmsets.report import build_report
from mmsets.runtime import Runtime
from mmsets.store import RaggedStore

QUIET = Runtime(device="cpu", num_workers=0, progress=False)
HUGE_PLOT = "\n".join(f"word{i}" for i in range(20_000))  # the reporter's 120 KB plot of one-word lines


def plots_manifest(plots: list[str]) -> Manifest:
    frame = pd.DataFrame({"id": [f"tt{i}" for i in range(len(plots))], "split": "test", "image": None,
                          "text_plot": pd.Series(plots, dtype=object), "labels": [["drama"]] * len(plots)})
    return Manifest(frame, ["drama"], dataset="plots")


def test_a_20000_line_plot_is_cut_to_the_cap_counted_and_fast(tmp_path, cached_minilm):
    manifest = plots_manifest([HUGE_PLOT, "A short plot.\nIn two lines."])
    start = time.perf_counter()
    summary = extract_text(manifest, tmp_path / "text.h5", TextParams(max_length=16), QUIET)
    assert time.perf_counter() - start < 60  # 20,000 elements took 299 s
    assert summary["cut_to_max_elements"] == 1 and summary["max_elements"] == DEFAULT_MAX_ELEMENTS
    assert summary["elements"] == DEFAULT_MAX_ELEMENTS + 2
    with RaggedStore(tmp_path / "text.h5") as store:
        assert [int(k) for k in store.counts()] == [DEFAULT_MAX_ELEMENTS, 2]
    html = build_report(tmp_path / "no_manifest.parquet", [], {"text": tmp_path / "text.h5"},
                        tmp_path / "report.html").read_text()
    assert "items cut to max_elements" in html and f"1 (cap {DEFAULT_MAX_ELEMENTS})" in html


def test_max_elements_is_a_setting_checked_like_the_others(tmp_path, cached_minilm):
    summary = extract_text(plots_manifest(["a\nb\nc\nd", "e"]), tmp_path / "text.h5",
                           make_params("text", {"max_elements": 3}), QUIET)
    assert summary["cut_to_max_elements"] == 1 and summary["elements"] == 4
    with pytest.raises(ParamsError, match="text params.max_elements: 0 is below 1"):
        make_params("text", {"max_elements": 0})
    with pytest.raises(ParamsError, match="ocr params.max_elements: 0 is below 1"):
        make_params("ocr", {"max_elements": 0})


class ManyWords:
    """An engine that reads 1,000 words on every image, the i-th with confidence i / 1000."""

    name, version = "tesseract", "fake"

    def __init__(self) -> None:
        self.device = "cpu"

    def read(self, images):
        n = 1000
        boxes = [[i, 0, i + 1, 1] for i in range(n)]
        return [OCRResult([f"w{i}" for i in range(n)], boxes, np.arange(n) / n) for _ in images]


def test_ocr_keeps_the_most_confident_words_in_reading_order(tmp_path):
    Image.new("RGB", (64, 64), (200, 200, 200)).save(tmp_path / "poster.png")
    frame = pd.DataFrame({"id": ["tt0"], "split": "test", "image": [str(tmp_path / "poster.png")],
                          "labels": [["drama"]]})
    manifest = Manifest(frame, ["drama"], dataset="posters")
    summary = extract_ocr(manifest, tmp_path / "ocr.h5", OCRParams(upscale_to=None, max_elements=5), QUIET,
                          engine=ManyWords())
    assert summary["cut_to_max_elements"] == 1 and summary["elements"] == 5
    with RaggedStore(tmp_path / "ocr.h5") as store:
        assert list(store.get(["tt0"], "text")[0]) == ["w995", "w996", "w997", "w998", "w999"]
