import numpy as np
import pandas as pd
import pytest
import torch

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.extract import ParamsError, make_params, run_extractor
from mmsets.extract import text as text_mod
from mmsets.extract.backbones import embed_texts
from mmsets.extract.text import TextParams, extract_text, segments
from mmsets.runtime import Runtime
from mmsets.store import RaggedStore

PLOTS = [
    "A retired detective is drawn back for one last case.\nIn the second summary, he meets his old partner.\n\n",
    None,
    "A young wizard discovers his powers at a school of magic.",
    "   ",
    float("nan"),
    "Two strangers fall in love on a night train across Europe, " + "talking about life and art " * 30,
]
TITLES = ["Last Case", "Silent Film", "", None, "Numbers", "Night Train"]
QUIET = Runtime(progress=False)


def manifest_of(plots=PLOTS, titles=TITLES) -> Manifest:
    frame = pd.DataFrame({"id": [f"tt{i:03d}" for i in range(len(plots))], "split": "test", "image": None,
                          "text_plot": pd.Series(plots, dtype=object), "text_title": pd.Series(titles, dtype=object),
                          "labels": [["drama"]] * len(plots)})
    return Manifest(frame, ["drama"], dataset="plots")


def test_paragraph_elements_fields_and_skips(tmp_path, cached_minilm):
    manifest = manifest_of()
    params = TextParams(fields=["plot", "title"], segment="paragraph", max_length=64)
    summary = extract_text(manifest, tmp_path / "text.h5", params, QUIET.replace(device="cpu", batch_size=2))
    expected_fields = [["plot", "plot", "title"], ["title"], ["plot"], [], ["title"], ["plot", "title"]]
    assert summary["items"] == 6 and summary["with_elements"] == 5 and summary["elements"] == 8
    assert summary["skipped"] == {"no_text": 5}  # per field: plots of tt001, tt003, tt004; titles of tt002, tt003
    assert summary["truncated"] == 1
    with RaggedStore(tmp_path / "text.h5") as store:
        assert store.ids == list(manifest.frame["id"])
        assert [list(f) for f in store.get(store.ids, "field")] == expected_fields
        assert store.attrs["extractor"] == "text" and store.params["segment"] == "paragraph"
        got = np.concatenate(store.get(store.ids)).astype(np.float32)
    # Length-sorted batching, yet every row is its own text's vector, in manifest order.
    texts = ["A retired detective is drawn back for one last case.", "In the second summary, he meets his old partner.",
             "Last Case", "Silent Film", "A young wizard discovers his powers at a school of magic.", "Numbers",
             PLOTS[5].strip(), "Night Train"]
    want = np.concatenate([embed_texts(cached_minilm, [t], "mean", 64) for t in texts])
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_no_text_counts_per_missing_field(tmp_path, cached_minilm):
    summary = extract_text(manifest_of(), tmp_path / "text.h5", TextParams(fields=["plot", "title"], segment="none"),
                           QUIET)
    assert summary["skipped"] == {"no_text": 5}
    assert summary["elements"] == 7 and summary["truncated"] == 0


def test_segments():
    assert segments(" one\r\n\n two \n", "paragraph") == ["one", "two"]
    assert segments(" one\n two ", "none") == ["one\n two"]
    assert segments(["first summary", "second"], "paragraph") == ["first summary", "second"]
    for missing in (None, float("nan"), pd.NA, "", " \n "):
        assert segments(missing, "paragraph") == [] and segments(missing, "none") == []


def test_interrupted_run_resumes_to_the_same_store(tmp_path, cached_minilm, monkeypatch, recorder):
    plots = [f"Plot number {i}: a story about {w}." for i, w in enumerate(["war", "love", "ghosts", "money"] * 3)]
    manifest = manifest_of(plots, [None] * len(plots))
    params = TextParams(pooling="cls")
    extract_text(manifest, tmp_path / "full.h5", params, QUIET)

    monkeypatch.setattr(text_mod, "CHUNK_ITEMS", 5)
    real = text_mod.embed_texts
    monkeypatch.setattr(text_mod, "embed_texts", recorder(real, fail_on=2))
    with pytest.raises(RuntimeError, match="killed"):
        extract_text(manifest, tmp_path / "text.h5", params, QUIET)
    assert (tmp_path / "text.h5.partial").exists() and not (tmp_path / "text.h5").exists()
    embedded = recorder(real)
    monkeypatch.setattr(text_mod, "embed_texts", embedded)
    summary = extract_text(manifest, tmp_path / "text.h5", params, QUIET)
    assert embedded.sizes == [5, 2] and summary["resumed"] == 5  # the first chunk is not embedded again
    with RaggedStore(tmp_path / "full.h5") as full, RaggedStore(tmp_path / "text.h5") as resumed:
        assert resumed.ids == full.ids
        np.testing.assert_array_equal(np.concatenate(resumed.get(resumed.ids)), np.concatenate(full.get(full.ids)))


def test_run_extractor_reads_the_manifest(tmp_path, cached_minilm):
    write_manifest(manifest_of(), tmp_path / "manifest.parquet")
    summary = run_extractor("text", tmp_path / "manifest.parquet", tmp_path / "text.h5",
                            {"fields": ["title"], "pooling": "cls"}, {"device": "cpu", "progress": False})
    assert summary["elements"] == 4 and summary["skipped"] == {"no_text": 2}
    with RaggedStore(tmp_path / "text.h5") as store:
        assert store.dim == 384 and store.params["pooling"] == "cls"


def test_bad_params_are_named(tmp_path, cached_minilm):
    with pytest.raises(ParamsError, match=r"\['synopsis'\] not in the manifest; it has \['plot', 'title'\]"):
        extract_text(manifest_of(), tmp_path / "t.h5", TextParams(fields=["plot", "synopsis"]))
    with pytest.raises(ParamsError, match="max_length: 4096 is over minilm-l6's 512"):
        extract_text(manifest_of(), tmp_path / "t.h5", TextParams(max_length=4096))
    with pytest.raises(ParamsError, match=r"unknown key\(s\) \['field'\]"):
        make_params("text", {"field": "plot"})
    with pytest.raises(ParamsError, match="fields: 'plot' is not of type"):
        make_params("text", {"fields": "plot"})
    with pytest.raises(ParamsError, match="pooling: 'max' is not one of"):
        make_params("text", {"pooling": "max"})
    with pytest.raises(ParamsError, match="segment: 'sentence' is not one of"):
        make_params("text", {"segment": "sentence"})
    with pytest.raises(ParamsError, match="fields: name at least one"):
        make_params("text", {"fields": []})
    assert not (tmp_path / "t.h5").exists() and not (tmp_path / "t.h5.partial").exists()


def test_random_weights_rehearse_roberta_large(tmp_path, random_roberta_large, loader, twice, monkeypatch):
    """weights: random builds RoBERTa-large from its published config: 1024-d vectors, the same on every run."""
    load = loader(random_roberta_large)
    monkeypatch.setattr(text_mod, "load_text_encoder", load)
    write_manifest(manifest_of(PLOTS[:3], TITLES[:3]), tmp_path / "manifest.parquet")
    params = {"model": "roberta-large", "weights": "random", "pooling": "cls", "max_length": 32}
    summary, path = twice("text", tmp_path / "manifest.parquet", tmp_path, params)
    assert [(name, kwargs["weights"]) for name, kwargs in load.calls] == [("roberta-large", "random")] * 2
    assert summary["elements"] == 3 and summary["skipped"] == {"no_text": 1}  # the first plot has two paragraphs
    with RaggedStore(path) as store:
        assert store.dim == 1024 and store.attrs["model"] == "roberta-large" and store.params["weights"] == "random"
        assert np.isfinite(np.concatenate(store.get(store.ids))).all()


def test_random_roberta_takes_a_full_window(random_roberta_large):
    """512 tokens, and a short text padded to them, stay inside RoBERTa's 514 positions and its 1 token type."""
    encoder = random_roberta_large
    assert encoder.max_length == 512
    batch = encoder.tokenizer(["word " * 700, "A short plot."], padding=True, truncation=True, max_length=512,
                              return_tensors="pt")
    assert batch["input_ids"].shape == (2, 512)
    with torch.inference_mode():
        embedded = encoder.model.embeddings(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"])
    assert embedded.shape == (2, 512, 1024) and torch.isfinite(embedded).all()
