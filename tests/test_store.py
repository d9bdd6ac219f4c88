import h5py
import numpy as np
import pytest

from mmsets.store import RaggedStore, RaggedWriter, StoreError, partial_path

FIELDS = {"scores": ((), "float32"), "label": ((), "str")}


def _items(rng, n=12, dim=8):
    counts = [0, 3, 1, 0, 5, 2, 0, 1, 4, 0, 2, 1][:n]
    return [(f"item-{i}", rng.normal(size=(k, dim)).astype(np.float32)) for i, k in enumerate(counts)]


def _write(path, items, **kw):
    with RaggedWriter(path, extractor="unit", dim=8, dtype="float32", params={"a": 1}, fields=FIELDS, **kw) as w:
        for item_id, data in items:
            w.add(item_id, data, scores=np.arange(len(data)), label=[f"{item_id}:{j}" for j in range(len(data))])
    return w


def test_round_trip_with_zero_element_items(tmp_path):
    items = _items(np.random.default_rng(0))
    path = tmp_path / "s.h5"
    _write(path, items)
    assert not partial_path(path).exists()
    with RaggedStore(path) as store:
        assert store.ids == [i for i, _ in items]
        assert store.counts().tolist() == [len(d) for _, d in items]
        assert store.params == {"a": 1}
        wanted = ["item-4", "item-0", "item-8"]
        got = store.get(wanted)
        for item_id, arr in zip(wanted, got):
            np.testing.assert_array_equal(arr, dict(items)[item_id])
        assert got[1].shape == (0, 8)
        assert store.get(["item-1"], field="label")[0].tolist() == ["item-1:0", "item-1:1", "item-1:2"]
        with pytest.raises(KeyError, match="item-99"):
            store.get(["item-99"])


def test_interrupted_write_is_never_a_finished_store_and_resumes(tmp_path):
    items = _items(np.random.default_rng(1))
    path = tmp_path / "s.h5"
    writer = RaggedWriter(path, extractor="unit", dim=8, dtype="float32", params={"a": 1}, fields=FIELDS,
                          commit_every=4)
    for item_id, data in items[:7]:
        writer.add(item_id, data, scores=np.arange(len(data)), label=["x"] * len(data))
    writer.file.close()  # the process dies: items 4..6 were written but never committed
    assert not path.exists()
    with pytest.raises(StoreError):
        RaggedStore(partial_path(path))

    resumed = RaggedWriter(path, extractor="unit", dim=8, dtype="float32", params={"a": 1}, fields=FIELDS)
    assert resumed.done_ids == {i for i, _ in items[:4]}
    for item_id, data in items:
        if item_id not in resumed.done_ids:
            resumed.add(item_id, data, scores=np.arange(len(data)), label=["x"] * len(data))
    resumed.close()
    with RaggedStore(path) as store:
        assert store.ids == [i for i, _ in items]
        np.testing.assert_array_equal(np.concatenate(store.get(store.ids)), np.concatenate([d for _, d in items]))


def test_partial_from_other_params_is_discarded(tmp_path):
    path = tmp_path / "s.h5"
    w = RaggedWriter(path, extractor="unit", dim=8, params={"a": 1})
    w.add("x", np.ones((1, 8)))
    w.abort()
    w2 = RaggedWriter(path, extractor="unit", dim=8, params={"a": 2})
    assert w2.done_ids == set()
    w2.close()


def test_unreadable_partial_starts_over(tmp_path):
    path = tmp_path / "s.h5"
    partial_path(path).write_bytes(b"not hdf5 at all")
    w = RaggedWriter(path, extractor="unit", dim=8)
    w.add("a", np.zeros((2, 8)))
    w.close()
    assert RaggedStore(path).counts().tolist() == [2]


def test_unfinished_file_is_refused(tmp_path):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f.attrs["complete"] = False
    with pytest.raises(StoreError, match="not finished"):
        RaggedStore(path)


def test_field_length_must_match(tmp_path):
    w = RaggedWriter(tmp_path / "s.h5", extractor="unit", dim=8, fields=FIELDS)
    with pytest.raises(StoreError, match="item 'a'"):
        w.add("a", np.zeros((2, 8)), scores=[1.0], label=["x", "y"])


def test_a_partial_store_is_continued_only_for_the_same_inputs(tmp_path):
    path = tmp_path / "s.h5"
    inputs = {f"i{k}": f"key{k}" for k in range(5)}
    writer = RaggedWriter(path, extractor="x", dim=2, inputs=inputs, commit_every=1)
    for k in range(3):
        writer.add(f"i{k}", np.full((1, 2), k))
    writer.abort()

    same = RaggedWriter(path, extractor="x", dim=2, inputs=inputs)
    assert same.done_ids == {"i0", "i1", "i2"} and same.restarted is None
    same.abort()

    changed = RaggedWriter(path, extractor="x", dim=2, inputs={**inputs, "i1": "other"})
    assert changed.done_ids == set() and changed.n_items == 0
    assert "1 of its 3 committed items were made from other inputs" in changed.restarted and "'i1'" in changed.restarted
    changed.abort()


def test_a_resume_copies_the_committed_items_and_drops_a_torn_tail(tmp_path):
    import h5py

    path = tmp_path / "s.h5"
    writer = RaggedWriter(path, extractor="x", dim=2, fields={"text": ((), "str")}, commit_every=2)
    for k in range(4):
        writer.add(f"i{k}", np.full((k % 2, 2), k), text=["w"] * (k % 2))
    writer.abort()  # 4 committed
    with h5py.File(partial_path(path), "r+") as f:  # a kill after writing rows it never committed
        f["ids"].resize((6,))
        f["ids"][4:] = ["torn1", "torn2"]
        f["text"].resize((5,))
        f["text"][2:] = ["x" * 100] * 3

    resumed = RaggedWriter(path, extractor="x", dim=2, fields={"text": ((), "str")})
    assert resumed.n_items == 4 and resumed.done_ids == {"i0", "i1", "i2", "i3"}
    resumed.add("i4", np.ones((1, 2)), text=["fresh"])
    resumed.close()
    with RaggedStore(path) as store:
        assert store.ids == ["i0", "i1", "i2", "i3", "i4"]
        assert [list(t) for t in store.get(store.ids, "text")] == [[], ["w"], [], ["w"], ["fresh"]]
        assert "inputs" not in store.fields


def test_a_partial_store_whose_committed_rows_changed_starts_over(tmp_path):
    path = tmp_path / "s.h5"
    writer = RaggedWriter(path, extractor="x", dim=2, dtype="float32", fields={"text": ((), "str")}, commit_every=2)
    for k in range(4):
        writer.add(f"i{k}", np.full((1, 2), k), text=[f"w{k}"])
    writer.abort()
    with h5py.File(partial_path(path), "r+") as f:  # committed rows no longer what was written
        f["text"][1] = "changed"

    resumed = RaggedWriter(path, extractor="x", dim=2, dtype="float32", fields={"text": ((), "str")})
    assert resumed.n_items == 0 and "text do not match their checksums" in resumed.restarted
    resumed.close()


def test_a_gather_refuses_a_shard_that_does_not_match_its_checksums(tmp_path):
    shards = []
    for k in range(2):
        shard = tmp_path / f"{k}.h5"
        with RaggedWriter(shard, extractor="x", dim=2, fields={"text": ((), "str")}) as writer:
            writer.add(f"s{k}", np.ones((2, 2)), text=["a", "b"])
        shards.append(shard)
    with h5py.File(shards[1], "r+") as f:
        f["text"][0] = "z"
    out = RaggedWriter(tmp_path / "gathered.h5", extractor="x", dim=2, fields={"text": ((), "str")}, resume=False)
    out.add_store(RaggedStore(shards[0]))
    with pytest.raises(StoreError, match=r"1\.h5: its text do not match their checksums; the store is damaged: "
                                         r"delete it and re-run"):
        out.add_store(RaggedStore(shards[1]))
    out.abort()
    assert not (tmp_path / "gathered.h5").exists()
