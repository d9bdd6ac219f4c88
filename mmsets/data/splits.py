"""Train/dev/test assignments in given proportions, with exact counts so that they hold for small n too.

A loader that splits items itself (tables without a split column, the generated demos) stratifies them by
their labels (``stratified_splits``): each class, or for multi-label each label, is spread over the splits in
the split's proportion, by the iterative stratification of Sechidis et al. (2011, the ``iterstrat``
package). Items without labels (regression) are split at random (``random_splits``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from iterstrat.ml_stratifiers import IterativeStratification

SPLIT_ORDER = ("train", "dev", "test")


def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """How many of ``n`` items go to train, dev and test in the proportions of ``fractions``."""
    if len(fractions) != 3 or min(fractions) < 0 or not fractions[0] > 0:
        raise ValueError(f"split_fractions: train, dev and test shares (>= 0, train's > 0), got {list(fractions)}")
    total = sum(fractions)
    n_train, n_dev = round(n * fractions[0] / total), round(n * fractions[1] / total)
    return n_train, n_dev, n - n_train - n_dev


def split_names(n: int, fractions: Sequence[float]) -> list[str]:
    """``n`` split names, all train first, then dev, then test, in the proportions of ``fractions``."""
    return [name for name, count in zip(SPLIT_ORDER, split_counts(n, fractions)) for _ in range(count)]


def shuffled_splits(rng: np.random.Generator, n: int, fractions: Sequence[float]) -> list[str]:
    """``split_names`` in an order drawn from ``rng`` (one permutation)."""
    names = split_names(n, fractions)
    return [names[j] for j in np.argsort(rng.permutation(n))]


def random_splits(n: int, fractions: Sequence[float], seed: int) -> list[str]:
    """``split_names`` in the order of a permutation drawn with ``seed``."""
    names = np.array(split_names(n, fractions), dtype=object)
    return list(names[np.random.default_rng(seed).permutation(n)])


def item_splits(n: int, fractions: Sequence[float], seed: int, labels: Sequence[Sequence[str]] | None = None,
                stratify: bool = True) -> list[str]:
    """A split name for each of ``n`` items: ``stratified_splits`` of their labels when ``stratify`` and they
    have labels (regression items have none: None), else ``random_splits``."""
    if stratify and labels is not None:
        return stratified_splits(labels, fractions, seed)
    return random_splits(n, fractions, seed)


def stratified_splits(labels: Sequence[Sequence[str]], fractions: Sequence[float], seed: int) -> list[str]:
    """A split name per item (``labels``: each item's labels: one for single-label, any for multi-label),
    every label's items spread over the splits as close to ``fractions`` as the counts allow; the splits
    hold exactly ``split_counts`` items."""
    n = len(labels)
    names = sorted({label for item in labels for label in item})
    column = {name: j for j, name in enumerate(names)}
    indicator = np.zeros((n, len(names)), bool)
    for i, item in enumerate(labels):
        indicator[i, [column[label] for label in item]] = True
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)  # iterstrat breaks its ties by position: the seed decides them
    shares = np.asarray(fractions, np.float64) / sum(fractions)
    assigned = np.empty(n, np.int64)
    # iterstrat draws its random tie-breaks from a legacy RandomState
    assigned[order] = IterativeStratification(indicator[order], shares, np.random.RandomState(seed))
    _move_to_exact_counts(assigned, indicator, shares, split_counts(n, fractions), order)
    return [SPLIT_ORDER[k] for k in assigned]


def _move_to_exact_counts(assigned: np.ndarray, indicator: np.ndarray, shares: np.ndarray,
                          counts: Sequence[int], order: np.ndarray) -> None:
    """Iterative stratification meets each split's size only roughly: move items from a split over its count
    to one under it, each time the item whose labels the first has most above and the second most below
    their share (ties: the first in ``order``)."""
    wanted = np.outer(shares, indicator.sum(axis=0))  # (splits, labels)
    position = np.argsort(order)
    while True:
        sizes = np.bincount(assigned, minlength=len(counts))
        over = np.flatnonzero(sizes > counts)
        if not len(over):
            return
        source, target = over[0], np.flatnonzero(sizes < counts)[0]
        held = np.stack([indicator[assigned == k].sum(axis=0) for k in range(len(counts))])
        excess = held - wanted
        members = np.flatnonzero(assigned == source)
        gain = indicator[members] @ (excess[source] - excess[target])
        best = members[gain == gain.max()]
        assigned[best[np.argmin(position[best])]] = target
