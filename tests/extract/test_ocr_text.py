import numpy as np
import pandas as pd
import pytest

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.extract import ParamsError, make_params, run_extractor
from mmsets.extract.backbones import embed_texts
from mmsets.extract.text import OCRTextParams, extract_ocr_text
from mmsets.runtime import Runtime
from mmsets.store import RaggedStore, RaggedWriter

# item -> (word, confidence) in reading order, as the ocr extractor stores them
OCR = {
    "tt0": [("THE", 0.96), ("LAST", 0.91), ("CASE", 0.88), ("~~", 0.12)],
    "tt1": [],
    "tt2": [("blurry", 0.2)],
    "tt3": [("Harold", 0.97), ("Lloyd", 0.66)],
}


def write_ocr_store(path, items=OCR) -> None:
    with RaggedWriter(path, extractor="ocr", dim=5, dtype="float32", model="tesseract", params={},
                      fields={"text": ((), "str")}, attrs={"backend": "tesseract", "backend_version": "5.3.0"}) as w:
        for item_id, words in items.items():
            data = [[10 * i, 0, 10 * i + 8, 10, conf] for i, (_, conf) in enumerate(words)]
            w.add(item_id, np.asarray(data, np.float32).reshape(-1, 5), text=[word for word, _ in words])


def manifest_of(ids) -> Manifest:
    frame = pd.DataFrame({"id": ids, "split": "test", "image": None, "labels": [["drama"]] * len(ids)})
    return Manifest(frame, ["drama"], dataset="posters")


def test_ocr_words_become_one_vector_per_item(tmp_path, cached_minilm):
    write_ocr_store(tmp_path / "ocr.h5")
    write_manifest(manifest_of(list(OCR)), tmp_path / "manifest.parquet")
    summary = run_extractor("ocr_text", tmp_path / "manifest.parquet", tmp_path / "ocr_text.h5",
                            {"ocr_store": str(tmp_path / "ocr.h5"), "min_conf": 0.5},
                            {"device": "cpu", "progress": False})
    assert summary["items"] == 4 and summary["elements"] == 2
    assert summary["skipped"] == {"no_text": 2}  # no word at all, and only a word below min_conf
    with RaggedStore(tmp_path / "ocr_text.h5") as store:
        assert store.ids == list(OCR) and [int(k) for k in store.counts()] == [1, 0, 0, 1]
        assert store.attrs["extractor"] == "ocr_text" and store.attrs["ocr_backend"] == "tesseract"
        assert [list(f) for f in store.get(["tt0", "tt3"], "field")] == [["ocr"], ["ocr"]]
        got = np.concatenate(store.get(["tt0", "tt3"])).astype(np.float32)
    want = embed_texts(cached_minilm, ["THE LAST CASE", "Harold Lloyd"], "mean", 256)
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_ocr_store_must_fit_the_manifest(tmp_path, cached_minilm):
    write_ocr_store(tmp_path / "ocr.h5")
    params = OCRTextParams(ocr_store=str(tmp_path / "ocr.h5"))
    with pytest.raises(ParamsError, match=r"lacks 1 manifest item\(s\), e.g. 'tt9'"):
        extract_ocr_text(manifest_of(["tt0", "tt9"]), tmp_path / "t.h5", params, Runtime(progress=False))
    with pytest.raises(ParamsError, match="ocr_store: name the ocr extractor's store"):
        extract_ocr_text(manifest_of(["tt0"]), tmp_path / "t.h5", OCRTextParams(), Runtime(progress=False))
    with RaggedWriter(tmp_path / "labels.h5", extractor="labels", dim=1, fields={"text": ((), "str")}) as w:
        w.add("tt0", np.ones((1, 1)), text=["cat"])
    with pytest.raises(ParamsError, match="written by the 'labels' extractor, not 'ocr'"):
        extract_ocr_text(manifest_of(["tt0"]), tmp_path / "t.h5", OCRTextParams(ocr_store=str(tmp_path / "labels.h5")))
    with pytest.raises(ParamsError, match="ocr_text params.max_length: 4096 is over"):
        extract_ocr_text(manifest_of(["tt0"]), tmp_path / "t.h5", OCRTextParams(ocr_store=str(tmp_path / "ocr.h5"),
                                                                                 max_length=4096))
    with pytest.raises(ParamsError, match=r"ocr_text params: unknown key\(s\) \['fields'\]"):
        make_params("ocr_text", {"fields": ["plot"]})
    assert not (tmp_path / "t.h5").exists() and not (tmp_path / "t.h5.partial").exists()


def test_random_weights_rehearse_roberta_large_on_ocr_words(tmp_path, random_roberta_large, loader, twice,
                                                            monkeypatch):
    from mmsets.extract import text as text_mod

    load = loader(random_roberta_large)
    monkeypatch.setattr(text_mod, "load_text_encoder", load)
    write_ocr_store(tmp_path / "ocr.h5")
    write_manifest(manifest_of(list(OCR)), tmp_path / "manifest.parquet")
    params = {"ocr_store": str(tmp_path / "ocr.h5"), "model": "roberta-large", "weights": "random", "pooling": "cls",
              "max_length": 32}
    summary, path = twice("ocr_text", tmp_path / "manifest.parquet", tmp_path, params)
    assert [(name, kwargs["weights"]) for name, kwargs in load.calls] == [("roberta-large", "random")] * 2
    assert summary["elements"] == 2
    with RaggedStore(path) as store:
        assert store.dim == 1024 and store.attrs["model"] == "roberta-large" and store.params["weights"] == "random"
