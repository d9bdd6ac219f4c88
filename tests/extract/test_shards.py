"""Sharded extraction: K blocks of the items extracted on their own and gathered equal one unsharded run."""

import shutil

import numpy as np
import pandas as pd
import pytest

from mmsets.data.manifest import Manifest, read_manifest, write_manifest
from mmsets.extract import ParamsError, run_extractor
from mmsets.extract.shard_summary import merged_summary
from mmsets.extract.shards import gather_shards, parse_shard, shard_bounds
from mmsets.plan.extractors import EXTRACTORS
from mmsets.runtime import Runtime
from mmsets.store import RaggedStore, StoreError

QUIET = Runtime(num_workers=0, progress=False, batch_size=3)
NAMES = ["cat.jpg", "corrupt.jpg", None, "coffee.png", "truncated.jpg", "rgba.png", "missing.jpg", "gray.png",
         "cmyk.jpg", "cat.jpg", "coffee.png"]
PARAMS = {
    "image": {"model": "efficientnet_lite0", "image_size": 64},
    "ocr": {"backend": "tesseract", "upscale_to": 128},  # per-element text fields travel too
}


@pytest.fixture(scope="module")
def manifest(photos, tmp_path_factory):
    images = [None if n is None else str(photos[n]) for n in NAMES]
    frame = pd.DataFrame({"id": [f"item{i}" for i in range(len(NAMES))], "split": "train", "image": images,
                          "labels": [["drama"]] * len(NAMES)})
    path = tmp_path_factory.mktemp("shards") / "manifest.parquet"
    write_manifest(Manifest(frame, ["drama"], dataset="photos"), path)
    return path


def extract_in_shards(name, manifest, out_dir, count):
    paths = [out_dir / f"{k}-of-{count}.h5" for k in range(count)]
    for k, path in enumerate(paths):
        run_extractor(name, manifest, path, PARAMS[name], QUIET, shard=(k, count))
    return paths


@pytest.mark.parametrize("name", list(PARAMS))
def test_gathered_shards_equal_one_unsharded_store(name, manifest, tmp_path):
    if name == "ocr" and shutil.which("tesseract") is None:
        pytest.skip("needs tesseract (make system)")
    full = run_extractor(name, manifest, tmp_path / "full.h5", PARAMS[name], QUIET)
    shards = extract_in_shards(name, manifest, tmp_path, 4)
    with RaggedStore(shards[0]) as first:
        assert first.ids == ["item0", "item1"]  # 11 items in blocks of 2, 3, 3, 3
    summary = gather_shards(name, manifest, shards, tmp_path / "gathered.h5")

    with RaggedStore(tmp_path / "full.h5") as a, RaggedStore(tmp_path / "gathered.h5") as b:
        assert b.ids == a.ids
        np.testing.assert_array_equal(b.offsets, a.offsets)
        np.testing.assert_allclose(b.file["data"][:].astype(np.float32), a.file["data"][:].astype(np.float32),
                                   atol=2e-3)
        for field in a.fields:
            assert [list(v) for v in b.get(a.ids, field)] == [list(v) for v in a.get(a.ids, field)]
        np.testing.assert_array_equal(b.file["inputs"][:], a.file["inputs"][:])  # a resume of it checks them
        assert b.params == a.params and b.writer_settings() == a.writer_settings()
    for key in ("items", "with_elements", "elements", "skipped"):
        assert summary[key] == full[key], key
    assert len(summary["shards"]) == 4 and sum(s["items"] for s in summary["shards"]) == len(NAMES)
    assert sorted(e["id"] for e in summary["errors"]) == sorted(e["id"] for e in full["errors"])


def test_a_manifest_in_memory_is_sharded_and_fingerprinted_as_its_file(manifest, tmp_path):
    in_memory = read_manifest(manifest)
    (tmp_path / "file").mkdir()
    (tmp_path / "memory").mkdir()
    from_file = extract_in_shards("image", manifest, tmp_path / "file", 2)
    from_memory = extract_in_shards("image", in_memory, tmp_path / "memory", 2)
    for a_path, b_path in zip(from_file, from_memory):
        with RaggedStore(a_path) as a, RaggedStore(b_path) as b:
            assert b.ids == a.ids
            np.testing.assert_array_equal(b.file["inputs"][:], a.file["inputs"][:])  # what a resume checks
            np.testing.assert_array_equal(b.file["data"][:], a.file["data"][:])
    gathered = gather_shards("image", in_memory, from_memory, tmp_path / "gathered.h5")
    assert gathered["items"] == len(NAMES)


def test_gather_refuses_shards_out_of_order_or_made_otherwise(manifest, tmp_path):
    shards = extract_in_shards("image", manifest, tmp_path, 2)
    with pytest.raises(StoreError, match=r"item 'item5' is not in shard 0/2"):
        gather_shards("image", manifest, shards[::-1], tmp_path / "out.h5")
    other = tmp_path / "other.h5"
    run_extractor("image", manifest, other, {**PARAMS["image"], "image_size": 32}, QUIET, shard=(1, 2))
    with pytest.raises(StoreError, match=r"other.h5: written with other \['params'\]"):
        gather_shards("image", manifest, [shards[0], other], tmp_path / "out.h5")
    with pytest.raises(StoreError, match=r"a store of extractor 'image', not 'faces'"):
        gather_shards("faces", manifest, shards, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_shard_settings_are_checked(manifest, tmp_path):
    for text in ("2/2", "1", "-1/3", "a/b"):
        with pytest.raises(ParamsError, match="expected i/K"):
            parse_shard(text)
    assert parse_shard(" 1/4 ") == (1, 4)
    with pytest.raises(ParamsError, match="'categorical' cannot be sharded: its vocabulary is fitted"):
        run_extractor("categorical", manifest, tmp_path / "c.h5", {}, QUIET, shard=(0, 2))
    # every item in exactly one block, blocks as equal as can be
    for n, k in [(11, 4), (3, 5), (1000, 7)]:
        bounds = [shard_bounds(n, i, k) for i in range(k)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


def test_a_gathered_summary_sums_counts_and_keeps_each_shards_own():
    shards = [
        {"items": 3, "with_elements": 2, "elements": 5, "skipped": {"no_image": 1}, "errors": [], "seconds": 2.0,
         "items_per_s": 1.5, "device": "cpu", "resumed": 0, "truncated": {"title": 1}, "max_length": 64,
         "tokens_per_item": {"mean": 3.0, "max": 7}},
        {"items": 4, "with_elements": 3, "elements": 6, "skipped": {"corrupt": 1, "no_image": 1},
         "errors": [{"id": "x", "reason": "corrupt", "detail": "bad"}], "seconds": 2.0, "items_per_s": 1.0,
         "device": "cuda:0", "resumed": 2, "truncated": {"title": 0, "plot": 2}, "max_length": 64,
         "tokens_per_item": {"mean": 4.0, "max": 9}, "restarted": "its params changed"},
    ]
    merged = merged_summary(shards, EXTRACTORS["tokens"].count_keys)
    assert merged["items"] == 7 and merged["with_elements"] == 5 and merged["elements"] == 11
    assert merged["skipped"] == {"corrupt": 1, "no_image": 2}
    assert merged["truncated"] == {"plot": 2, "title": 1} and merged["resumed"] == 2
    assert merged["errors"] == shards[1]["errors"] and merged["restarted"] == "its params changed"
    assert merged["seconds"] == 4.0 and merged["items_per_s"] == 1.25  # the 5 items processed in 4 s
    assert merged["max_length"] == 64  # a setting the shards agree on
    assert "device" not in merged and "tokens_per_item" not in merged  # no sum means anything: see "shards"
    assert merged["shards"] == shards
