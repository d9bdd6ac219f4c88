import numpy as np
import pandas as pd
import pytest
import torch

from mmsets.data.manifest import Manifest
from mmsets.data.sets import SetDataset, collate_sets
from mmsets.store import RaggedStore, RaggedWriter


@pytest.fixture
def stores(tmp_path):
    rng = np.random.default_rng(0)
    with RaggedWriter(tmp_path / "a.h5", extractor="a", dim=4) as w:
        for item_id, k in (("i0", 2), ("i1", 0), ("i2", 1), ("i3", 3)):
            w.add(item_id, rng.normal(size=(k, 4)))
    with RaggedWriter(tmp_path / "b.h5", extractor="b", dim=2, dtype="float32") as w:
        w.add("i0", rng.normal(size=(1, 2)))  # i1, i2, i3 are absent from this store
    opened = {"a": RaggedStore(tmp_path / "a.h5"), "b": RaggedStore(tmp_path / "b.h5")}
    yield opened
    for s in opened.values():
        s.close()


def manifest(labels=None):
    frame = pd.DataFrame({
        "id": ["i0", "i1", "i2", "i3"],
        "split": ["train", "train", "train", "dev"],
        "image": [None] * 4,
        "labels": labels or [["x"], ["x", "y"], [], ["z"]],
    })
    return Manifest(frame, ["x", "y", "z"])


def test_dataset_loads_ragged_sets_and_multi_hot_labels(stores):
    ds = SetDataset(manifest(), stores, "train", ["x", "y", "z"])
    assert ds.ids == ["i0", "i1", "i2"]
    assert ds.input_dims == {"a": 4, "b": 2}
    assert [len(x) for x in ds.elements["a"]] == [2, 0, 1]
    assert [len(x) for x in ds.elements["b"]] == [1, 0, 0]
    # Elements stay in the store's dtype in memory (half the size for float16); batches are float32.
    assert all(x.dtype == np.float16 for x in ds.elements["a"])
    assert all(x.dtype == np.float32 for x in ds.elements["b"])
    np.testing.assert_array_equal(ds.labels, [[1, 0, 0], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_allclose(ds[0].modalities["a"], stores["a"].get(["i0"])[0], rtol=1e-3)


def test_collate_pads_and_masks(stores):
    ds = SetDataset(manifest(), stores, "train", ["x", "y", "z"])
    batch = collate_sets([ds[0], ds[1], ds[2]])
    x, mask = batch.modalities["a"]
    assert x.shape == (3, 2, 4) and x.dtype == torch.float32
    assert mask.tolist() == [[True, True], [False, False], [True, False]]
    assert batch.labels.shape == (3, 3)
    assert batch.ids == ["i0", "i1", "i2"]
    x, mask = collate_sets([ds[1], ds[2]]).modalities["b"]  # no item of the batch has a b element
    assert x.shape == (2, 1, 2) and not mask.any()
    assert len(batch.to("cpu")) == 3


def test_unknown_label_names_the_item(stores):
    with pytest.raises(ValueError, match="i1.*'w'"):
        SetDataset(manifest([["x"], ["w"], [], []]), stores, "train")


def write_index_store(path, sets, num_embeddings=10):
    with RaggedWriter(path, extractor="objects", dim=1, dtype="float32",
                      attrs={"kind": "index", "num_embeddings": num_embeddings}) as w:
        for item_id, ids in sets.items():
            w.add(item_id, np.asarray(ids, np.float32)[:, None])


def test_index_store_becomes_int64_ids_padded_with_zero(stores, tmp_path):
    write_index_store(tmp_path / "objects.h5", {"i0": [3, 7, 3], "i1": [], "i2": [9]})  # i3 absent
    with RaggedStore(tmp_path / "objects.h5") as objects:
        ds = SetDataset(manifest(), {**stores, "objects": objects}, "train", ["x", "y", "z"])
    assert ds.input_kinds == {"a": "float", "b": "float", "objects": "index"}
    assert ds.input_dims == {"a": 4, "b": 2, "objects": 10}
    assert [x.tolist() for x in ds.elements["objects"]] == [[3, 7, 3], [], [9]]
    assert all(x.dtype == np.int64 and x.ndim == 1 for x in ds.elements["objects"])
    x, mask = collate_sets([ds[1], ds[2], ds[0]]).modalities["objects"]
    assert x.dtype == torch.int64 and x.tolist() == [[0, 0, 0], [9, 0, 0], [3, 7, 3]]
    assert mask.tolist() == [[False] * 3, [True, False, False], [True] * 3]
    x, mask = collate_sets([ds[1]]).modalities["objects"]
    assert x.shape == (1, 1) and not mask.any()


def test_index_store_ids_outside_the_table_name_the_item(tmp_path):
    write_index_store(tmp_path / "bad.h5", {"i0": [1], "i1": [10]}, num_embeddings=10)
    with RaggedStore(tmp_path / "bad.h5") as bad, pytest.raises(ValueError, match=r"'i1' has ids outside \[0, 10\)"):
        SetDataset(manifest(), {"bad": bad}, "train")


def test_streamed_items_equal_preloaded_ones_and_survive_worker_processes(stores, tmp_path):
    write_index_store(tmp_path / "objects.h5", {"i0": [3, 7, 3], "i1": [], "i2": [9]})
    with RaggedStore(tmp_path / "objects.h5") as objects:
        all_stores = {**stores, "objects": objects}
        loaded = SetDataset(manifest(), all_stores, None, ["x", "y", "z"], preload=True)
        streamed = SetDataset(manifest(), all_stores, None, ["x", "y", "z"], preload=False)
    assert loaded.preloaded and not streamed.preloaded
    assert not isinstance(streamed.elements["a"], list)  # nothing read yet
    for name in loaded.modalities:
        np.testing.assert_array_equal(streamed.counts(name), loaded.counts(name))
        for x, y in zip(loaded.elements[name], streamed.elements[name]):
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(x, y)
    # each DataLoader worker opens the stores for itself (the stores above are closed by now)
    loader = torch.utils.data.DataLoader(streamed, batch_size=2, num_workers=2, collate_fn=collate_sets)
    batches = list(loader)
    expected = collate_sets([loaded[i] for i in range(len(loaded))])
    for name in loaded.modalities:
        got = torch.cat([torch.nn.functional.pad(b.modalities[name][1], (0, 3 - b.modalities[name][1].shape[1]))
                         for b in batches])
        assert got.sum() == expected.modalities[name][1].sum()
