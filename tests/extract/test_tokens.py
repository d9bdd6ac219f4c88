import numpy as np
import pandas as pd
import pytest
import torch

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.data.sequences import SequenceDataset, build_segments
from mmsets.store import store_modalities
from mmsets.extract import ParamsError, make_params, run_extractor
from mmsets.extract import tokens as tokens_mod
from mmsets.extract.tokens import (TokensParams, categorical_text, extract_tokens, faces_text, modality_position_ids,
                                   position_offset)
from mmsets.models.dm2s2 import dm2s2
from mmsets.plan.sources import upstream_stores
from mmsets.runtime import Runtime
from mmsets.store import RaggedStore, RaggedWriter

SOURCES = ["text:title", "text:plot", "ocr", "objects", "faces", "cat:rating"]
CPU = Runtime(device="cpu", progress=False)
IDS = ["tt0", "tt1", "tt2", "tt3", "tt4"]
TITLES = ["Night Train", None, "The Last Case", "  ", "Ghosts"]
PLOTS = ["Two strangers fall in love on a night train across Europe.", "A young wizard finds his powers.", None,
         "A retired detective is drawn back for one last case.", "A family moves into a haunted house."]
RATINGS = ["PG", 13.0, None, "R", "PG"]
IMAGES = ["tt0.jpg", "tt1.jpg", "tt2.jpg", None, "tt4.jpg"]
# Upstream elements; an id left out is not in that store. tt3 has no image: nothing to read, no faces span.
OCR = {"tt0": ["NIGHT", "TRAIN", "coming", "soon"], "tt1": [], "tt4": ["GHOSTS"]}
OBJECTS = {"tt0": (["dog", "person", "train"], [0.7, 0.95, 0.8]), "tt1": ([], []), "tt2": (["cat"], [0.9]),
           "tt4": (["person", "person"], [0.8, 0.9])}
FACES = {"tt0": 2, "tt1": 0, "tt2": 1, "tt3": 0, "tt4": 0}
# What each source's span must hold (None: an empty span)
EXPECTED = {
    "tt0": ["Night Train", PLOTS[0], "NIGHT TRAIN coming soon", "person train dog", "2 faces", "rating: PG"],
    "tt1": [None, PLOTS[1], None, None, "no faces", "rating: 13"],
    "tt2": ["The Last Case", None, None, "cat", "1 face", None],
    "tt3": [None, PLOTS[3], None, None, None, "rating: R"],
    "tt4": ["Ghosts", PLOTS[4], "GHOSTS", "person person", "no faces", "rating: PG"],
}


def manifest_of() -> Manifest:
    frame = pd.DataFrame({"id": IDS, "split": ["train", "train", "train", "dev", "test"],
                          "image": pd.Series(IMAGES, dtype=object), "text_title": pd.Series(TITLES, dtype=object),
                          "text_plot": pd.Series(PLOTS, dtype=object), "cat_rating": pd.Series(RATINGS, dtype=object),
                          "labels": [["drama"], ["fantasy"], ["crime", "drama"], ["crime"], ["horror"]]})
    return Manifest(frame, ["crime", "drama", "fantasy", "horror"], dataset="films")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("upstream")
    with RaggedWriter(d / "ocr.h5", extractor="ocr", dim=5, dtype="float32", fields={"text": ((), "str")}) as w:
        for item_id, words in OCR.items():
            w.add(item_id, np.random.rand(len(words), 5), text=words)
    with RaggedWriter(d / "objects.h5", extractor="objects", dim=1, dtype="float32",
                      fields={"scores": ((), "float32"), "label": ((), "str")}) as w:
        for item_id, (labels, scores) in OBJECTS.items():
            w.add(item_id, np.zeros((len(labels), 1)), scores=scores, label=labels)
    with RaggedWriter(d / "faces.h5", extractor="faces", dim=4, fields={"prob": ((), "float32")}) as w:
        for item_id, n in FACES.items():
            w.add(item_id, np.random.rand(n, 4), prob=np.ones(n))
    return {name: str(d / f"{name}.h5") for name in ("ocr", "objects", "faces")}


def params(stores, **kw) -> TokensParams:
    return make_params("tokens", {"modalities": SOURCES, "stores": stores, **kw})


def direct(minilm, input_ids, position_ids=None, layer=-1):
    """The encoder run on one sequence by itself, no batching, no padding."""
    with torch.inference_mode():
        out = minilm.model(torch.as_tensor(input_ids)[None], output_hidden_states=True,
                           position_ids=None if position_ids is None else torch.as_tensor(position_ids)[None])
    return out.hidden_states[layer][0].numpy()


def read(path):
    with RaggedStore(path) as store:
        return store, dict(zip(store.ids, store.get(store.ids))), dict(zip(store.ids, store.get(store.ids, "modality")))


def test_layout_spans_and_states_are_the_encoders(tmp_path, stores, cached_minilm):
    tok = cached_minilm.tokenizer
    summary = extract_tokens(manifest_of(), tmp_path / "tokens.h5", params(stores), CPU.replace(batch_size=2))
    store, states, modality = read(tmp_path / "tokens.h5")
    assert store.ids == IDS and store.dim == 384
    assert store.attrs["extractor"] == "tokens" and store.attrs["max_length"] == 512
    assert store.params["modalities"] == SOURCES
    assert store_modalities(store) == SOURCES
    for item_id in IDS:
        input_ids, want_modality = build_segments(tok, EXPECTED[item_id], 512)
        np.testing.assert_array_equal(modality[item_id], want_modality)
        assert states[item_id].dtype == np.float16 and len(states[item_id]) == len(input_ids)
        for m, text in enumerate(EXPECTED[item_id]):  # each source's text is its span; a missing one is empty
            span = tok.decode(input_ids[want_modality == m]).replace(" ", "")  # "rating : pg" reads "rating: pg"
            assert span == ("" if text is None else text.lower().replace(" ", "")), (item_id, m)
        with RaggedStore(tmp_path / "tokens.h5") as again:  # the tokenizer's pieces, for the report's attention map
            assert list(again.get([item_id], "token")[0]) == tok.convert_ids_to_tokens([int(t) for t in input_ids])
        # The stored states are the encoder's own, [CLS] included, despite length-sorted padded batches.
        want = direct(cached_minilm, input_ids)
        np.testing.assert_allclose(states[item_id][0].astype(np.float32), want[0], rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(states[item_id].astype(np.float32), want, rtol=2e-3, atol=2e-3)
    assert summary["items"] == 5 and summary["resumed"] == 0
    assert summary["empty"] == {"text:title": 2, "text:plot": 1, "ocr": 3, "objects": 2, "faces": 1, "cat:rating": 1}
    assert summary["not_in_store"] == {"ocr": 2, "objects": 1, "faces": 0}
    assert summary["truncated"] == dict.fromkeys(SOURCES, 0)
    assert summary["tokens_per_item"]["max"] == max(len(s) for s in states.values())
    assert summary["elements"] == sum(len(s) for s in states.values())


def test_per_modality_positions_change_states_not_layout(tmp_path, stores, cached_minilm):
    extract_tokens(manifest_of(), tmp_path / "global.h5", params(stores), CPU)
    extract_tokens(manifest_of(), tmp_path / "span.h5", params(stores, position_ids="per_modality", layer=3), CPU)
    _, global_states, global_modality = read(tmp_path / "global.h5")
    _, span_states, span_modality = read(tmp_path / "span.h5")
    for item_id in IDS:
        np.testing.assert_array_equal(span_modality[item_id], global_modality[item_id])
        assert span_states[item_id].shape == global_states[item_id].shape
        assert not np.allclose(span_states[item_id][0], global_states[item_id][0], atol=1e-2)
    input_ids, modality = build_segments(cached_minilm.tokenizer, EXPECTED["tt0"], 512)
    want = direct(cached_minilm, input_ids, modality_position_ids(modality, "per_modality"), layer=3)
    np.testing.assert_allclose(span_states["tt0"].astype(np.float32), want, rtol=2e-3, atol=2e-3)


def test_position_ids():
    modality = np.array([-1, 0, 0, 0, -1, -1, 2, 2, -1])  # span 1 is empty
    np.testing.assert_array_equal(modality_position_ids(modality, "global"), np.arange(9))
    np.testing.assert_array_equal(modality_position_ids(modality, "per_modality"), [0, 1, 2, 3, 4, 1, 1, 2, 3])


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_explicit_global_positions_are_the_models_own(arch):
    """RoBERTa numbers positions from padding_idx + 1: with the offset, explicit ids reproduce its default."""
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    config = AutoConfig.for_model(arch, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, vocab_size=100, max_position_embeddings=40)
    model = AutoModel.from_config(config).eval()
    assert position_offset(model) == (0 if arch == "bert" else 2)
    ids = torch.randint(5, 100, (1, 12))
    positions = torch.as_tensor(modality_position_ids(np.zeros(12), "global") + position_offset(model))[None]
    with torch.inference_mode():
        torch.testing.assert_close(model(ids, position_ids=positions).last_hidden_state,
                                   model(ids).last_hidden_state)


def test_budgets_and_window_truncate_and_are_counted(tmp_path, stores, cached_minilm):
    summary = extract_tokens(manifest_of(), tmp_path / "t.h5", params(stores, max_length=16, budgets={"text:title": 1}),
                             CPU)
    _, states, modality = read(tmp_path / "t.h5")
    assert max(len(s) for s in states.values()) <= 16
    assert all((m == 0).sum() <= 1 for m in modality.values())
    assert summary["truncated"]["text:title"] == 2  # "Night Train", "The Last Case"; "Ghosts" is one token
    assert summary["truncated"]["text:plot"] == 4 and summary["max_length"] == 16


def test_dataset_and_dm2s2_read_the_store(tmp_path, stores, cached_minilm):
    extract_tokens(manifest_of(), tmp_path / "tokens.h5", params(stores), CPU)
    manifest = manifest_of()
    dataset = SequenceDataset(manifest, tmp_path / "tokens.h5", "train")
    assert dataset.modalities == SOURCES and len(dataset) == 3 and not dataset.missing
    counts = dataset.token_counts()
    assert (counts[1, [0, 2, 3]] == 0).all() and (counts[0] > 0).all()  # tt1: no title, no OCR words, no objects
    batch = dataset.collate([dataset[i] for i in range(len(dataset))])
    model = dm2s2(hidden_size=dataset.hidden_size, n_classes=len(manifest.label_names), n_modalities=len(SOURCES))
    logits = model(batch)
    assert logits.shape == (3, 4) and torch.isfinite(logits).all()
    inter = model.explain(batch)
    assert (inter[1, [0, 2, 3]] == 0).all()  # an empty span takes no part in InterMRA
    picked = SequenceDataset(manifest, tmp_path / "tokens.h5", "train", modalities=["text:plot", "faces"])
    assert picked.token_counts()[1].tolist() == [counts[1, 1], counts[1, 4]]


def test_interrupted_run_resumes_to_the_same_store(tmp_path, stores, cached_minilm, monkeypatch, recorder):
    extract_tokens(manifest_of(), tmp_path / "full.h5", params(stores), CPU)
    monkeypatch.setattr(tokens_mod, "CHUNK_ITEMS", 2)
    real = tokens_mod.encode_sequences
    monkeypatch.setattr(tokens_mod, "encode_sequences", recorder(real, fail_on=2))
    with pytest.raises(RuntimeError, match="killed"):
        extract_tokens(manifest_of(), tmp_path / "t.h5", params(stores), CPU)
    assert (tmp_path / "t.h5.partial").exists() and not (tmp_path / "t.h5").exists()
    encoded = recorder(real)
    monkeypatch.setattr(tokens_mod, "encode_sequences", encoded)
    summary = extract_tokens(manifest_of(), tmp_path / "t.h5", params(stores), CPU)
    assert encoded.sizes == [2, 1] and summary["resumed"] == 2 and summary["items"] == 5
    _, full, full_modality = read(tmp_path / "full.h5")
    store, resumed, resumed_modality = read(tmp_path / "t.h5")
    assert store.ids == IDS
    for item_id in IDS:
        np.testing.assert_array_equal(resumed_modality[item_id], full_modality[item_id])
        np.testing.assert_allclose(resumed[item_id].astype(np.float32), full[item_id].astype(np.float32), atol=2e-3)


def test_run_extractor_and_mmimdb_sample(tmp_path, mmimdb_sample, cached_minilm):
    from mmsets.data.mmimdb import load_mmimdb

    sample = load_mmimdb(mmimdb_sample)
    manifest = Manifest(sample.frame.iloc[:6].reset_index(drop=True), sample.label_names, dataset="mmimdb")
    write_manifest(manifest, tmp_path / "manifest.parquet")
    summary = run_extractor("tokens", tmp_path / "manifest.parquet", tmp_path / "tokens.h5",
                            {"modalities": ["text:title", "text:plot"], "max_length": 48},
                            {"device": "cpu", "progress": False, "batch_size": 4, "num_workers": 2})
    assert summary["items"] == 6 and summary["tokens_per_item"]["max"] <= 48
    assert summary["empty"]["text:title"] == int(manifest.frame["text_title"].isna().sum())
    with RaggedStore(tmp_path / "tokens.h5") as store:
        assert store.ids == list(manifest.frame["id"]) and store.dim == 384


def test_texts_of_sources():
    assert [faces_text(n) for n in (0, 1, 3)] == ["no faces", "1 face", "3 faces"]
    assert categorical_text("rating", 13.0) == "rating: 13" and categorical_text("x", float("nan")) is None
    assert categorical_text("tags", ["a", None, "b"]) == "tags: a, b" and categorical_text("ok", True) == "ok: True"
    assert upstream_stores(SOURCES) == ["ocr", "objects", "faces"]
    assert upstream_stores(["text:plot", "labels"]) == ["labels"]


def test_bad_params_are_named(tmp_path, stores, cached_minilm):
    with pytest.raises(ParamsError, match="'image' is not one of text:<field>, cat:<field>, ocr"):
        make_params("tokens", {"modalities": ["image"]})
    with pytest.raises(ParamsError, match=r"modalities \['ocr'\] need their store's path"):
        make_params("tokens", {"modalities": ["text:plot", "ocr"]})
    with pytest.raises(ParamsError, match="budgets: 'ocr' is not one of the modalities"):
        make_params("tokens", {"modalities": ["text:plot"], "budgets": {"ocr": 3}})
    with pytest.raises(ParamsError, match="budgets.text:plot: -1"):
        make_params("tokens", {"modalities": ["text:plot"], "budgets": {"text:plot": -1}})
    with pytest.raises(ParamsError, match="position_ids: 'local' is not one of"):
        make_params("tokens", {"position_ids": "local"})
    with pytest.raises(ParamsError, match="stores: 'image' is not a store source"):
        make_params("tokens", {"stores": {"image": "x.h5"}})
    # A store no modality reads is not recorded.
    assert make_params("tokens", {"stores": {"ocr": "x.h5"}}).stores == {}
    manifest = manifest_of()
    with pytest.raises(ParamsError, match=r"no text field 'synopsis' in the manifest; it has \['title', 'plot'\]"):
        extract_tokens(manifest, tmp_path / "t.h5", TokensParams(modalities=["text:synopsis"]), CPU)
    with pytest.raises(ParamsError, match="stores.labels: no feature store 'none' at .*none.h5'"):
        extract_tokens(manifest, tmp_path / "t.h5", params({"labels": str(tmp_path / "none.h5")},
                                                           modalities=["labels"]), CPU)
    with pytest.raises(ParamsError, match="stores.ocr: .* has no per-element field 'text'"):
        extract_tokens(manifest, tmp_path / "t.h5", params({"ocr": stores["faces"]}, modalities=["ocr"]), CPU)
    with pytest.raises(ParamsError, match="max_length: 4096 is over minilm-l6's 512"):
        extract_tokens(manifest, tmp_path / "t.h5", TokensParams(modalities=["text:plot"], max_length=4096), CPU)
    with pytest.raises(ParamsError, match="layer: 7 is not a layer of minilm-l6"):
        extract_tokens(manifest, tmp_path / "t.h5", TokensParams(modalities=["text:plot"], layer=7), CPU)
    assert not (tmp_path / "t.h5").exists() and not (tmp_path / "t.h5.partial").exists()


def test_random_weights_rehearse_roberta_large_states(tmp_path, random_roberta_large, loader, twice, monkeypatch):
    """DM2S2's frozen encoder at random weights: 1024-d states of every token, a 512-token window, the same twice."""
    from mmsets.extract import backbones

    load = loader(random_roberta_large)
    monkeypatch.setattr(backbones, "load_text_encoder", load)
    frame = manifest_of().frame.drop(columns="cat_rating")
    write_manifest(Manifest(frame, ["crime", "drama", "fantasy", "horror"]), tmp_path / "manifest.parquet")
    assert tokens_mod.encoder_window(random_roberta_large, None) == 512
    params = {"modalities": ["text:title", "text:plot"], "model": "roberta-large", "weights": "random",
              "max_length": 32, "position_ids": "per_modality"}
    summary, path = twice("tokens", tmp_path / "manifest.parquet", tmp_path, params)
    assert [(name, kwargs["weights"]) for name, kwargs in load.calls] == [("roberta-large", "random")] * 2
    assert summary["items"] == len(IDS) and summary["max_length"] == 32
    with RaggedStore(path) as store:
        assert store.dim == 1024 and store.attrs["model"] == "roberta-large" and store.params["weights"] == "random"
        states = store.get(store.ids)
    assert max(len(s) for s in states) <= 32 and all(np.isfinite(s.astype(np.float32)).all() for s in states)
