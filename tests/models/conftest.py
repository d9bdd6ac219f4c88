"""Synthetic feature stores shared by the baseline and pooled-model tests."""

import pytest

from mmsets.data.synthetic import write_synthetic_sets
from mmsets.runs.run import train_run

FEATURES = ("signal", "noise")  # the stores write_synthetic_sets makes: one carries the labels


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """``data(task)``: the folder of a synthetic manifest and stores for that task, made once per module."""
    made = {}

    def get(task):
        if task not in made:
            made[task] = write_synthetic_sets(tmp_path_factory.mktemp(task), task, n_items=300)
        return made[task]

    return get


@pytest.fixture
def run():
    """``run(root, out, spec)``: train_run on the synthetic stores of ``root``."""

    def train(root, out, spec):
        return train_run(root / "manifest.parquet", {n: root / f"{n}.h5" for n in FEATURES}, out, spec)

    return train
