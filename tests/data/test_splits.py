from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from mmsets.data.splits import item_splits, random_splits, split_counts, stratified_splits

ROOT = Path(__file__).resolve().parents[2]

FRACTIONS = (0.7, 0.1, 0.2)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 7, 10, 23, 90, 1000])
def test_stratified_splits_hold_exact_counts_for_any_n(n):
    rng = np.random.default_rng(n)
    single = [["pos"] if rng.random() < 0.37 else ["neg"] for _ in range(n)]
    multi = [list(rng.choice(list("abcde"), size=rng.integers(0, 4), replace=False)) for _ in range(n)]
    for labels in (single, multi):
        counts = Counter(stratified_splits(labels, FRACTIONS, seed=0))
        assert (counts["train"], counts["dev"], counts["test"]) == split_counts(n, FRACTIONS)


def test_each_class_is_spread_over_the_splits_in_their_proportions():
    labels = [["pos"]] * 33 + [["neg"]] * 57  # 90 items, 37 % positives
    splits = stratified_splits(labels, FRACTIONS, seed=0)
    per_split = Counter(zip(splits, (label for (label,) in labels)))
    assert per_split == {("train", "pos"): 23, ("train", "neg"): 40, ("dev", "pos"): 3, ("dev", "neg"): 6,
                         ("test", "pos"): 7, ("test", "neg"): 11}  # 33 and 57 each split as nearly 7:1:2 as can be


def test_every_label_of_multilabel_items_is_spread_by_iterative_stratification():
    rng = np.random.default_rng(1)
    genres = list("abcdefgh")
    weights = np.linspace(1, 8, len(genres))
    labels = [list(rng.choice(genres, size=rng.integers(1, 4), replace=False, p=weights / weights.sum()))
              for _ in range(600)]
    stratified = stratified_splits(labels, (0.6, 0.15, 0.25), seed=0)
    at_random = random_splits(600, (0.6, 0.15, 0.25), seed=0)

    def worst_dev_share_error(splits):
        errors = []
        for genre in genres:
            members = [s for s, item in zip(splits, labels) if genre in item]
            errors.append(abs(members.count("dev") / len(members) - 0.15))
        return max(errors)

    assert worst_dev_share_error(stratified) < 0.02 < worst_dev_share_error(at_random)


def test_the_seed_decides_the_split_and_nothing_else_does():
    labels = [["a"], ["b"], ["a", "b"], []] * 25
    first = stratified_splits(labels, FRACTIONS, seed=3)
    assert stratified_splits(labels, FRACTIONS, seed=3) == first != stratified_splits(labels, FRACTIONS, seed=4)
    assert Counter(stratified_splits([["a"]] * 10, (1, 0, 0), seed=0)) == {"train": 10}


@pytest.mark.parametrize("fractions", [(0.7, 0.3), (0, 0.5, 0.5), (0.7, -0.1, 0.4)])
def test_bad_fractions_are_refused(fractions):
    with pytest.raises(ValueError, match="split_fractions"):
        split_counts(10, fractions)


def test_split_stratify_false_splits_the_items_at_random_with_the_same_counts():
    labels = [["a"]] * 80 + [["b"]] * 20
    stratified = item_splits(100, FRACTIONS, 3, labels)
    assert stratified == stratified_splits(labels, FRACTIONS, seed=3)
    plain = item_splits(100, FRACTIONS, 3, labels, stratify=False)
    assert plain == random_splits(100, FRACTIONS, seed=3)
    assert Counter(plain) == Counter(stratified)
    assert item_splits(100, FRACTIONS, 3, None) == plain  # regression: nothing to stratify by


def test_a_tables_split_stratify_is_accepted_by_the_schema_and_reaches_the_loader(tmp_path):
    from mmsets.data.table import load_table
    from mmsets.plan.schema import validated

    table = tmp_path / "t.csv"
    table.write_text("id,text,label\n" + "".join(f"{i},w{i},{'yes' if i % 5 == 0 else 'no'}\n" for i in range(50)))
    kwargs = dict(id_column="id", image_column=None, text_columns=["text"], label_column="label", task="binary",
                  split_fractions=(0.6, 0.2, 0.2), split_seed=1)
    stratified = load_table(table, **kwargs).frame["split"].tolist()
    plain = load_table(table, **kwargs, split_stratify=False).frame["split"].tolist()
    assert plain == random_splits(50, (0.6, 0.2, 0.2), 1) and plain != stratified
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["datasets"]["mine"] = {"kind": "table", "path": str(table), "task": "binary", "label_column": "label",
                                  "split_stratify": False}
    assert validated(config, schema)["datasets"]["mine"]["split_stratify"] is False
    assert validated(config, schema)["datasets"]["demo"]["split_stratify"] is True
