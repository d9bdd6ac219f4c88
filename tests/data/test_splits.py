from collections import Counter

import numpy as np
import pytest

from mmsets.data.splits import random_splits, split_counts, stratified_splits

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
