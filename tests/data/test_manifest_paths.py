"""A results tree moves as a whole: a manifest holds its own images relative to its folder, and older manifests
with absolute paths read as they were written."""

import json
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from mmsets import load_run
from mmsets.data.manifest import Manifest, read_manifest, write_manifest
from mmsets.data.table import write_table_manifest
from mmsets.extract import run_extractor
from mmsets.runs.evaluate import evaluate_run
from mmsets.runs.run import train_run

QUIET = {"device": "cpu", "num_workers": 0, "progress": False}


def results_tree(root, outside):
    """results/ads/: a table and its images (raw/), the manifest, a categorical store and a trained run."""
    tree = root / "results" / "ads"
    (tree / "raw" / "images").mkdir(parents=True)
    rows = []
    for k in range(30):
        image = f"images/ad-{k}.png"
        Image.new("RGB", (4, 4), (k * 8, 0, 0)).save(tree / "raw" / image)
        rows.append({"id": f"ad-{k}", "image": str(outside) if k == 0 else image, "colour": ("red", "blue")[k % 2],
                     "answer": ("no", "yes")[k % 2]})
    pd.DataFrame(rows).to_csv(tree / "raw" / "table.csv", index=False)
    write_table_manifest(tree / "raw" / "table.csv", tree / "manifest.parquet", id_column="id", image_column="image",
                         categorical_columns=["colour"], label_column="answer", task="binary")
    run_extractor("categorical", tree / "manifest.parquet", tree / "features" / "categorical.h5", {}, QUIET)
    spec = {"model": "logreg", "features": ["categorical"], "training": {"batch_size": 16}}
    stores = {"categorical": tree / "features" / "categorical.h5"}
    train_run(tree / "manifest.parquet", stores, tree / "runs" / "r", spec)
    return tree


def test_a_moved_results_tree_reads_and_predicts(tmp_path):
    outside = tmp_path / "elsewhere" / "poster.png"
    outside.parent.mkdir()
    Image.new("RGB", (4, 4)).save(outside)
    tree = results_tree(tmp_path / "before", outside)
    stored = pq.read_table(tree / "manifest.parquet").column("image").to_pylist()
    assert stored[0] == str(outside) and stored[1] == "raw/images/ad-1.png"  # inside the tree: relative

    moved = tmp_path / "after" / "results" / "ads"
    moved.parent.mkdir(parents=True)
    shutil.move(tree, moved)
    manifest = read_manifest(moved / "manifest.parquet")
    images = list(manifest.frame["image"])
    assert images[0] == str(outside) and images[1] == str(moved / "raw" / "images" / "ad-1.png")
    assert all(p.startswith(str(moved)) and (moved / p).is_file() for p in images[1:])

    metrics = evaluate_run(moved / "runs" / "r", moved / "manifest.parquet", moved / "features", device="cpu")
    assert metrics["accuracy"] == json.loads((moved / "runs" / "r" / "metrics.json").read_text())["test"]["accuracy"]
    frame = load_run(moved / "runs" / "r").predict(moved / "raw" / "table.csv", runtime=QUIET, device="cpu")
    assert len(frame) == 30 and set(frame["predicted"]) <= {"no", "yes"}


def test_a_manifest_with_absolute_paths_and_no_image_base_reads_as_written(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b"], "split": ["test", "test"], "image": ["/data/posters/a.jpg", None],
                          "labels": [[], []]})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {"label_names": [], "task": "multilabel", "dataset": "old", "extra": {}}  # as written before image_base
    pq.write_table(table.replace_schema_metadata({b"mmsets": json.dumps(meta).encode()}), tmp_path / "old.parquet")
    assert list(read_manifest(tmp_path / "old.parquet").frame["image"]) == ["/data/posters/a.jpg", None]

    write_manifest(Manifest(frame, []), tmp_path / "new.parquet")  # outside the manifest's folder: kept absolute
    assert list(read_manifest(tmp_path / "new.parquet").frame["image"]) == ["/data/posters/a.jpg", None]
