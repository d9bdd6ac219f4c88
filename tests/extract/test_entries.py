"""What only an extractor knows lives in its registry entry: the generic code (recipe, shard summary, erasure)
asks the entry."""

import json

import pandas as pd
import pytest

from mmsets.data.manifest import Manifest, read_manifest, write_manifest
from mmsets.extract import ParamsError, run_extractor
from mmsets.extract.recipe import recipe_inputs
from mmsets.plan.extractors import EXTRACTORS, extractor
from mmsets.store import RaggedStore


def test_recipe_inputs_are_the_manifest_fields_each_entry_reads_in_recipe_order():
    recipe = {
        "text": {"extractor": "text", "params": {"fields": ["title", "plot"]}, "reads": {}},
        "categorical": {"extractor": "categorical", "params": {"fields": ["rating"]}, "reads": {}},
        "tokens": {"extractor": "tokens", "params": {"modalities": ["text:tagline", "cat:rating", "ocr", "text:plot"]},
                   "reads": {}},
        "image": {"extractor": "image", "params": {}, "reads": {}},
        "mine": {"extractor": "", "params": {"fields": ["x"]}, "reads": {}, "external": True},
    }
    assert recipe_inputs(recipe) == {"text": ["title", "plot", "tagline"], "categorical": ["rating"]}
    assert recipe_inputs({"c": {"extractor": "categorical", "params": {"fields": None}, "reads": {}}}) == {
        "text": [], "categorical": []}


def test_tokens_settings_without_a_modality_extract_the_test_items_only():
    settings = {"modalities": ["text:title", "ocr", "faces"], "stores": {"ocr": "ocr.h5", "faces": "faces.h5"},
                "budgets": {"ocr": 8}, "model": "minilm-l6"}
    before = json.dumps(settings)
    assert extractor("tokens").erased(settings, 1) == {
        "modalities": ["text:title", "faces"], "stores": {"faces": "faces.h5"}, "budgets": None, "model": "minilm-l6",
        "splits": ["test"]}
    assert json.dumps(settings) == before
    assert extractor("tokens@easyocr").modalities(settings) == ["text:title", "ocr", "faces"]
    with pytest.raises(ParamsError, match="no modalities"):
        extractor("image").erased({}, 0)
    with pytest.raises(ParamsError, match="no modalities"):
        extractor("text").modalities({"fields": ["plot"]})


def test_an_entry_names_its_own_summary_counts_and_its_upstream_stores():
    assert EXTRACTORS["faces"].count_keys == {"no_face"} and EXTRACTORS["image"].count_keys == frozenset()
    assert extractor("tokens").upstream_of({"modalities": ["text:plot", "labels"]}) == {"stores.labels": "labels"}
    assert extractor("tokens").store_params == {"stores"} and extractor("bbox").store_params == {"objects_store"}


def test_new_items_get_the_training_vocabulary_and_a_manifest_in_memory_extracts_as_its_file(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b", "c"], "split": ["train", "train", "test"], "image": [None] * 3,
                          "labels": [["x"]] * 3, "cat_color": ["red", "blue", "green"]})
    path = tmp_path / "manifest.parquet"
    write_manifest(Manifest(frame, ["x"]), path)
    quiet = {"num_workers": 0, "progress": False}
    run_extractor("categorical", path, tmp_path / "file.h5", None, quiet)
    run_extractor("categorical", read_manifest(path), tmp_path / "memory.h5", None, quiet)
    with RaggedStore(tmp_path / "file.h5") as a, RaggedStore(tmp_path / "memory.h5") as b:
        assert a.ids == b.ids and (a.file["data"][:] == b.file["data"][:]).all()
        carried = extractor("categorical").carried_params(a.attrs, a.params)
    assert carried["vocab"] == {"color": ["<unk>", "blue", "red"]} and carried["fields"] == ["color"]
