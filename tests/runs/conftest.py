"""A tiny trained run directory, for the tests of what is recorded and logged about a run."""

import numpy as np
import pandas as pd
import pytest

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.runs.run import train_run
from mmsets.store import RaggedWriter


@pytest.fixture
def tiny_run(tmp_path):
    """A two-epoch DMMS run (binary labels, one store with settings) in tmp_path/run."""
    rng = np.random.default_rng(0)
    labels = ["a", "b"]
    rows = [{"id": f"i{i}", "split": ("train", "train", "dev", "test")[i % 4], "image": None,
             "labels": [labels[i % 2]]} for i in range(40)]
    write_manifest(Manifest(pd.DataFrame(rows), labels, dataset="tiny"), tmp_path / "manifest.parquet")
    with RaggedWriter(tmp_path / "f.h5", extractor="f", dim=4, dtype="float32", params={"width": 4}) as w:
        for row in rows:
            w.add(row["id"], rng.normal(size=(2, 4)) + (row["labels"] == ["b"]))
    spec = {"model": "dmms", "features": ["f"], "pooling": "max", "d_model": 8, "head_hidden": [8],
            "training": {"epochs": 2, "warmup_epochs": 1, "batch_size": 8}}
    train_run(tmp_path / "manifest.parquet", {"f": tmp_path / "f.h5"}, tmp_path / "run", spec)
    return tmp_path / "run"
