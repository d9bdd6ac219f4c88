import numpy as np

from mmsets.data.manifest import read_manifest
from mmsets.data.sets import SetDataset
from mmsets.models.fitted import LightGBMModel, LogRegModel, lightgbm, logreg, pooled_features
from mmsets.store import RaggedStore
from mmsets.runs.checkpoint import load_checkpoint

FEATURES = ("signal", "noise")  # the stores of write_synthetic_sets
SMALL = {"lightgbm": {"n_estimators": 60, "min_child_samples": 5, "n_jobs": 1}, "logreg": {"C": [0.01, 0.5]}}




def test_pooled_features_are_means_and_counts(data):
    root = data("binary")
    stores = {n: RaggedStore(root / f"{n}.h5") for n in FEATURES}
    ds = SetDataset(read_manifest(root / "manifest.parquet"), stores, None)
    X, names = pooled_features(ds)
    assert X.shape == (len(ds), 8 + 4 + 2) and names[-2:] == ["signal#count", "noise#count"]
    i = int(np.argmax(ds.counts("signal") > 1))
    np.testing.assert_allclose(X[i, :8], ds.elements["signal"][i].astype(np.float32).mean(0), rtol=1e-6)
    empty = int(np.argmax(ds.counts("noise") == 0))
    assert (X[empty, 8:12] == 0).all() and X[empty, -1] == 0


def test_lightgbm_multilabel_has_one_booster_per_label_and_regression_works(data, tmp_path, run):
    metrics = run(data("multilabel"), tmp_path / "ml", {"model": "lightgbm", "features": list(FEATURES),
                                                         **SMALL["lightgbm"]})
    assert metrics["test"]["f1_micro"] > 0.5 and len(metrics["boosting_rounds"]) == 3
    model, _ = load_checkpoint(tmp_path / "ml" / "model.pt")
    assert isinstance(model, LightGBMModel) and len(model.models) == 3
    assert all(s.startswith("tree") for s in model.state_dict()["boosters"])  # LightGBM's text format

    root = data("regression")
    manifest = read_manifest(root / "manifest.parquet")
    y = manifest.split("test")["target"].to_numpy()
    mean_rmse = np.sqrt(np.mean((y - manifest.split("train")["target"].mean()) ** 2))
    for name in ("lightgbm", "logreg"):
        metrics = run(root, tmp_path / name, {"model": name, "features": list(FEATURES), **SMALL[name]})
        assert metrics["test"]["rmse"] < 0.8 * mean_rmse, name


def test_logreg_handles_a_label_constant_in_training():
    model = logreg(input_dims={"a": 2}, n_classes=2)
    X = np.random.default_rng(0).normal(size=(20, 3))
    Y = np.zeros((20, 2))
    Y[:10, 0] = 1
    model.fit(X, Y, X, Y, "multilabel")
    probs = model.predict(X)
    assert probs.shape == (20, 2) and (probs[:, 1] < 1e-6).all()
    lgbm = lightgbm(input_dims={"a": 2}, n_classes=2, n_estimators=5, min_child_samples=2, n_jobs=1)
    lgbm.fit(X, Y, X, Y, "multilabel")
    assert lgbm.predict(X).shape == (20, 2)


def test_logreg_picks_C_on_dev_and_clips_to_the_training_range(data, tmp_path, run):
    metrics = run(data("binary"), tmp_path / "run", {"model": "logreg", "features": list(FEATURES),
                                                    "C": [1e-4, 0.01, 1.0]})
    assert metrics["chosen_C"] in (1e-4, 0.01, 1.0) and metrics["selection"] == "C by dev accuracy"
    model = logreg(input_dims={"a": 1}, n_classes=2, C=1.0)
    X = np.zeros((30, 2))
    X[0, 0] = 1e-3  # almost always 0: a tiny standard deviation
    X[:, 1] = np.arange(30)
    Y = np.stack([X[:, 1] < 15, X[:, 1] >= 15], axis=1).astype(float)
    model.fit(X, Y, X, Y, "binary")
    unseen = np.array([[5.0, 10.0]])  # a value 5000 times the training maximum changes nothing
    np.testing.assert_allclose(model.predict(unseen), model.predict(np.array([[1e-3, 10.0]])))
    assert isinstance(model, LogRegModel)


def test_index_modalities_pool_to_id_histograms():
    class Fake:
        modalities = ["cat", "vec"]
        input_dims = {"cat": 3, "vec": 2}
        input_kinds = {"cat": "index", "vec": "float"}
        elements = {"cat": [np.array([0, 2, 2]), np.zeros(0, np.int64)],
                    "vec": [np.array([[1.0, 3.0]], np.float16), np.array([[2.0, 2.0], [4.0, 0.0]])]}

        def __len__(self):
            return 2

        def counts(self, name):
            return np.array([len(a) for a in self.elements[name]])

    X, names = pooled_features(Fake())
    np.testing.assert_allclose(X, [[1 / 3, 0, 2 / 3, 1, 3, 3, 1], [0, 0, 0, 3, 1, 0, 2]], rtol=1e-6)
    assert names == ["cat[0]", "cat[1]", "cat[2]", "vec[0]", "vec[1]", "cat#count", "vec#count"]
