"""Train/dev/test assignments in given proportions, with exact counts so that they hold for small n too."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def split_names(n: int, fractions: Sequence[float]) -> list[str]:
    """``n`` split names, all train first, then dev, then test, in the proportions of ``fractions``."""
    total = sum(fractions)
    n_train, n_dev = round(n * fractions[0] / total), round(n * fractions[1] / total)
    return ["train"] * n_train + ["dev"] * n_dev + ["test"] * (n - n_train - n_dev)


def shuffled_splits(rng: np.random.Generator, n: int, fractions: Sequence[float]) -> list[str]:
    """``split_names`` in an order drawn from ``rng`` (one permutation)."""
    names = split_names(n, fractions)
    return [names[j] for j in np.argsort(rng.permutation(n))]
