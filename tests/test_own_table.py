"""A researcher's own table with the shipped config: its declared fields decide the stores and the runs."""

from collections import Counter
from pathlib import Path

import pytest
import yaml

from mmsets.plan.config import (ConfigError, configured_extractors, dataset_ensembles, dataset_runs,
                                extractor_settings, store_lacks, validate_config)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = ROOT / "config.yaml"


def with_table(**table) -> dict:
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["datasets"]["movies"] = {"kind": "table", "path": "movies.csv", "task": "binary", "id_column": "id",
                                    "label_column": "drama", **table}
    return validate_config(config, SCHEMA)


def stores_read(config: dict) -> set[str]:
    return {store for run in dataset_runs(config, "movies").values() for store in run.features}


def test_a_poster_and_plot_table_runs_dmms_and_logreg_on_each_store_and_both():
    config = with_table(image_column="poster", text_columns=["plot"])
    runs = dataset_runs(config, "movies")
    combinations = Counter(run.combination for run in runs.values())
    assert combinations == {"image": 9, "text": 9, "all": 9}  # (DMMS max, sum, logreg) x 3 seeds
    assert {tuple(run.features) for run in runs.values() if run.combination == "all"} == {("image", "text")}
    assert Counter(run.model for run in runs.values()) == {"dmms": 18, "logreg": 9}
    assert stores_read(config) == {"image", "text"}  # no OCR, faces, objects or title tokens
    assert len(dataset_ensembles(config, "movies")) == 9 + 1  # each configuration's seeds, and the ensemble
    assert extractor_settings(config, "movies", "text")["fields"] == ["plot"]
    assert extractor_settings(config, "movies", "tokens")["modalities"] == ["text:plot", "labels"]


def test_a_text_only_table_runs_its_text_and_keeps_no_duplicate_combination():
    config = with_table(text_columns=["slogan"], categorical_columns=[])
    runs = dataset_runs(config, "movies")
    assert {run.combination for run in runs.values()} == {"text"} and len(runs) == 9
    assert store_lacks(config, "movies", "image") == ["an image_column"]
    assert store_lacks(config, "movies", "bbox") == ["an image_column"]
    assert store_lacks(config, "movies", "categorical") == ["categorical_columns"]


def test_categorical_columns_are_a_store_of_their_own_and_part_of_all():
    config = with_table(image_column="image", text_columns=["slogan"], categorical_columns=["tone"])
    runs = dataset_runs(config, "movies")
    assert {run.combination for run in runs.values()} == {"image", "text", "categorical", "all"}
    assert {tuple(run.features) for run in runs.values() if run.combination == "all"} == {
        ("image", "text", "categorical")}
    assert extractor_settings(config, "movies", "categorical")["fields"] == ["tone"]


def test_a_datasets_own_settings_win_over_its_fields():
    config = with_table(text_columns=["plot", "tagline"], extractors={"text": {"fields": ["tagline"]}})
    assert extractor_settings(config, "movies", "text")["fields"] == ["tagline"]
    assert "text" in configured_extractors(config, "movies")


@pytest.mark.parametrize("table, message", [
    ({"text_columns": ["plot"], "experiments": ["dmms"]}, "cannot make store 'image': it lacks an image_column"),
    ({"image_column": "poster", "text_columns": ["plot"], "experiments": ["dm2s2_main"],
      "extractors": {"tokens": {"modalities": ["text:title", "text:plot"]}}},
     "cannot make store 'tokens': it lacks text column 'title'"),
])
def test_a_group_the_table_cannot_feed_is_refused_naming_what_it_lacks(table, message):
    with pytest.raises(ConfigError, match=message):
        with_table(**table)
