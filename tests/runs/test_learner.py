"""The learner protocol: one interface over trained and fitted families, importance in one form."""

import numpy as np
import pytest

from mmsets.data.manifest import read_manifest
from mmsets.data.synthetic import write_synthetic_sets
from mmsets.plan.families import FAMILIES
from mmsets.runs.learner import FittedLearner, TrainedLearner, learner_for
from mmsets.runs.scoring import training_datasets
from mmsets.plan.spec import TrainConfig
from mmsets.store import RaggedStore
from mmsets.tasks import make_task

FEATURES = ("signal", "noise")


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = write_synthetic_sets(tmp_path_factory.mktemp("sets"), "binary", n_items=200)
    manifest = read_manifest(root / "manifest.parquet")
    stores = {n: RaggedStore(root / f"{n}.h5") for n in FEATURES}
    task = make_task("binary", manifest.label_names)
    return (*training_datasets("dmms", manifest, stores, task), task)


@pytest.mark.parametrize("name, settings, kind, per_item", [
    ("dmms", {"d_model": 8, "head_hidden": [8], "pooling": "max"}, "argmax", True),
    ("dmms", {"d_model": 8, "head_hidden": [8], "pooling": "sum"}, None, None),
    ("gmu", {"d_model": 8, "head_hidden": [8]}, "gate", True),
    ("late_fusion", {"head_hidden": [8]}, None, None),
    ("lightgbm", {"n_estimators": 20}, "gain", False),
    ("logreg", {"C": 1.0}, None, None),
])
def test_every_set_family_fits_predicts_and_explains_through_one_protocol(splits, name, settings, kind, per_item):
    train, dev, test, task = splits
    fam = FAMILIES[name]
    learner = learner_for(fam.build(**settings, **fam.data_config(train, task.n_outputs)))
    assert isinstance(learner, FittedLearner if fam.resources.gpu is False else TrainedLearner)
    result = learner.fit(train, dev, TrainConfig(epochs=2, batch_size=32, warmup_epochs=0), task)
    assert (result.best_epoch is None) == isinstance(learner, FittedLearner)
    outputs = learner.predict(test, 64, task)
    assert outputs.shape == (len(test), 2) and np.allclose(outputs.sum(axis=1), 1.0)
    assert learner.n_params > 0
    importance = learner.explain(test, 64)
    if kind is None:
        assert importance is None
        return
    assert importance.kind == kind and importance.per_item == per_item
    assert importance.shares.shape == ((len(test) if per_item else 1), len(FEATURES))
    rows = importance.shares[importance.shares.sum(axis=1) > 0]
    assert np.allclose(rows.sum(axis=1), 1.0, atol=1e-5)  # one share per modality, summing to one
