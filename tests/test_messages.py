"""Errors of a wrong setting name what is there instead, briefly: the known datasets, the stores a folder
holds, the first few classes of a label column."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mmsets.cli import main
from mmsets.data.manifest import Manifest, write_manifest
from mmsets.data.table import TableError, class_order, load_table
from mmsets.extract.per_image import image_paths
from mmsets.listing import listed
from mmsets.plan.config import dataset_settings
from mmsets.plan.errors import ConfigError
from workdirs import workdir_config

ROOT = Path(__file__).resolve().parents[1]


def test_a_long_list_shows_its_first_values_and_how_many_more():
    assert listed(["a", "b"]) == "'a', 'b'"
    assert listed(range(1000), limit=3) == "0, 1, 2 … and 997 more"
    assert listed([]) == "none"
    assert len(listed(["x" * 10_000])) == 60


def test_a_wrong_label_column_names_a_few_classes_not_every_value(tmp_path):
    rows = [{"id": f"item-{k}", "plot": f"a long plot number {k} " * 20, "label": "yes" if k % 2 else "no"}
            for k in range(3000)]
    table = tmp_path / "items.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    with pytest.raises(TableError) as err:
        load_table(table, id_column="id", image_column=None, text_columns=["plot"], label_column="plot",
                   task="binary")
    message = str(err.value)
    assert len(message) < 1500, len(message)
    assert "found 3000" in message and "… and 2992 more" in message and "the column to learn" in message


def test_a_missing_column_names_a_few_of_the_header(tmp_path):
    table = tmp_path / "wide.csv"
    pd.DataFrame([{f"column_{k}": k for k in range(500)}]).to_csv(table, index=False)
    with pytest.raises(TableError, match=r"no column 'label' \(the header has 'column_0', .* and 492 more\)"):
        load_table(table, id_column=None, image_column=None, label_column="label", task="binary")


def test_numeric_classes_are_in_numeric_order():
    assert class_order({"10", "2", "1"}) == ["1", "2", "10"]
    assert class_order({"yes", "no"}) == ["no", "yes"]
    assert class_order({"true", "false"}) == ["false", "true"]


def test_an_unknown_dataset_names_the_known_ones():
    config = {"datasets": {"demo": {}, "mmimdb": {}}}
    with pytest.raises(ConfigError, match=r"no dataset 'moviez' in the config .*'demo', 'mmimdb'"):
        dataset_settings(config, "moviez")


def test_a_misspelled_dataset_in_the_target_fails_the_dry_run_naming_the_known_ones(tmp_path):
    shutil.copy(ROOT / "config.yaml", workdir_config(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
                           str(tmp_path), "--cores", "1", "-n", "results/moviez/report.html"],
                          capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "no dataset 'moviez' in the config" in output and "'demo', 'mmimdb'" in output
    assert "KeyError" not in output


def test_every_image_path_wrong_hints_at_the_datasets_image_root(tmp_path):
    frame = pd.DataFrame({"id": ["a"], "split": ["test"], "image": [str(tmp_path / "gone.png")], "labels": [[]]})
    with pytest.raises(RuntimeError, match=r"datasets\.<name>\.image_root") as err:
        image_paths(Manifest(frame, []))
    assert "runtime image_root" not in str(err.value)


def test_training_on_a_store_that_is_not_there_names_the_stores_there(tmp_path, capsys):
    rows = [{"id": f"i{k}", "colour": "red" if k % 2 else "blue", "label": "yes" if k % 2 else "no"} for k in range(20)]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    manifest = load_table(tmp_path / "t.csv", id_column="id", image_column=None, categorical_columns=["colour"],
                          label_column="label", task="binary")
    write_manifest(manifest, tmp_path / "manifest.parquet")
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "image.h5").write_bytes(b"")  # only its name matters here
    code = main(["train", "--manifest", str(tmp_path / "manifest.parquet"),
                 "--features-dir", str(tmp_path / "features"), "--out-dir", str(tmp_path / "run"),
                 "--spec", '{"model": "logreg", "features": ["imag"]}',
                 "--device", "cpu"])
    error = capsys.readouterr().err
    assert code == 1
    assert "no feature store 'imag'" in error and "its folder holds 'image'" in error and "'categorical'" in error
    assert "errno" not in error.lower()
