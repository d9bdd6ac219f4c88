"""Ensembles: members' dev and test outputs combined, weights and decision fitted on dev only."""

import numpy as np
import pandas as pd
import pytest

from mmsets.data.manifest import read_manifest
from mmsets.data.synthetic import write_synthetic_sets
from mmsets.io import read_json
from mmsets.plan.ensembles import BEST_PER_FAMILY, FAMILIES, SEEDS, EnsembleSpec, expand_ensembles
from mmsets.plan.errors import SpecError
from mmsets.plan.spec import RunSpec, TrainConfig
from mmsets.runs.ensemble import EnsembleError, build_ensemble, fit_weights
from mmsets.runs.record import RunRecord
from mmsets.runs.run import train_run
from mmsets.runs.scoring import open_stores, predict_items, read_ensemble
from mmsets.tasks import make_task

FEATURES = ["signal", "noise"]
TRAINING = {"epochs": 4, "batch_size": 32, "lr": 1e-2, "warmup_epochs": 1}
CONFIGURATIONS = {  # configuration -> (model, settings)
    "g-sig-max": ("dmms", {"pooling": "max", "d_model": 16, "head_hidden": [16]}),
    "g-sig-sum": ("dmms", {"pooling": "sum", "d_model": 16, "head_hidden": [16]}),
    "g-sig-logreg": ("logreg", {"C": 1.0}),
}


def _spec(configuration, seed, cv=None):
    model, settings = CONFIGURATIONS[configuration]
    group, combination, variant = configuration.split("-")
    return RunSpec(model, FEATURES, dict(settings), TrainConfig(**TRAINING, seed=seed), cv, group, combination,
                   None if model == "dmms" else variant)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two seeds of each configuration on synthetic multi-label sets, in one runs folder."""
    root = write_synthetic_sets(tmp_path_factory.mktemp("ensemble") / "data", "multilabel", n_items=300)
    runs = {}
    for configuration in CONFIGURATIONS:
        for seed in (0, 1):
            spec = _spec(configuration, seed)
            assert spec.configuration == configuration
            train_run(root / "manifest.parquet", {n: root / f"{n}.h5" for n in FEATURES}, root / "runs" / spec.name,
                      spec)
            runs[spec.name] = spec
    return root, runs


def _rows(root, name, split):
    rows = pd.read_parquet(root / "runs" / name / "predictions.parquet")
    return rows[rows["split"] == split].reset_index(drop=True)


def test_a_seed_ensemble_averages_its_seeds_and_tunes_the_decision_on_the_averaged_dev(trained):
    root, runs = trained
    experiments = {"g": {"model": "dmms"}}
    specs = expand_ensembles(experiments, ["g"], runs)
    assert sorted(specs) == ["g-sig-logreg-seeds", "g-sig-max-seeds", "g-sig-sum-seeds"]
    spec = specs["g-sig-max-seeds"]
    assert spec.kind == SEEDS and spec.runs == ["g-sig-max-s0", "g-sig-max-s1"]

    record = build_ensemble(spec, root / "runs", root / "runs" / spec.name)
    out = root / "runs" / spec.name
    labels = read_manifest(root / "manifest.parquet").label_names
    for split in ("dev", "test"):
        mean = np.mean([_rows(root, run, split)[labels].to_numpy() for run in spec.runs], axis=0)
        np.testing.assert_allclose(_rows(root, spec.name, split)[labels].to_numpy(), mean)
    task = make_task("multilabel", labels)
    dev, test = _rows(root, spec.name, "dev"), _rows(root, spec.name, "test")
    truth = {name: np.array([[label in row for label in labels] for row in rows["labels"]], int)
             for name, rows in (("dev", dev), ("test", test))}
    decision = task.decide(truth["dev"], dev[labels].to_numpy(), "f1_micro", True)
    expected = task.metrics(truth["test"], test[labels].to_numpy(), decision)
    assert record.test["f1_micro"] == pytest.approx(expected["f1_micro"])
    on_disk = RunRecord.read(out)
    assert on_disk.model == "ensemble" and on_disk.configuration == spec.name and on_disk.seed is None
    assert on_disk.threshold == pytest.approx(decision.threshold)
    members = read_json(out / "ensemble.json")
    assert [m["run"] for m in members["members"]] == spec.runs
    assert [m["weight"] for m in members["members"]] == pytest.approx([0.5, 0.5])


def test_a_family_ensemble_takes_the_best_of_each_family_by_dev_and_never_looks_at_test(trained, tmp_path):
    root, runs = trained
    experiments = {"g": {"model": "dmms"}, "ens": {"model": "ensemble", "weights": "fitted"}}
    spec = expand_ensembles(experiments, ["g", "ens"], runs)["ens"]
    assert spec.kind == FAMILIES and spec.members == BEST_PER_FAMILY and len(spec.runs) == 6
    build_ensemble(spec, root / "runs", tmp_path / "ens")
    summary = read_json(tmp_path / "ens" / "ensemble.json")
    chosen = {c["configuration"] for c in summary["configurations"]}
    dev = {c: np.mean([RunRecord.read(root / "runs" / r).dev["f1_micro"] for r in spec.candidates[c]])
           for c in CONFIGURATIONS}
    best_dmms = max(("g-sig-max", "g-sig-sum"), key=dev.get)
    assert chosen == {best_dmms, "g-sig-logreg"}
    weights = [c["weight"] for c in summary["configurations"]]
    assert min(weights) >= 0 and sum(weights) == pytest.approx(1.0)
    assert sum(m["weight"] for m in summary["members"]) == pytest.approx(1.0)

    # the members' test outputs shuffled: the same choice, the same weights, the same decision
    shuffled = tmp_path / "shuffled"
    rng = np.random.default_rng(0)
    labels = read_manifest(root / "manifest.parquet").label_names
    for name in spec.runs:
        (shuffled / name).mkdir(parents=True)
        (shuffled / name / "metrics.json").write_bytes((root / "runs" / name / "metrics.json").read_bytes())
        rows = pd.read_parquet(root / "runs" / name / "predictions.parquet")
        test = (rows["split"] == "test").to_numpy()
        rows.loc[test, labels] = rng.permutation(rows.loc[test, labels].to_numpy())
        rows.to_parquet(shuffled / name / "predictions.parquet")
    build_ensemble(spec, shuffled, tmp_path / "ens-shuffled")
    again = read_json(tmp_path / "ens-shuffled" / "ensemble.json")
    assert again["configurations"] == summary["configurations"] and again["decision"] == summary["decision"]


def test_fitted_weights_leave_out_a_member_that_only_adds_noise():
    rng = np.random.default_rng(0)
    truth = (rng.random((400, 3)) < 0.3).astype(int)
    good = np.clip(truth * 0.7 + 0.15 + rng.normal(0, 0.05, truth.shape), 0.01, 0.99)
    noise = rng.random(truth.shape)
    weights = fit_weights(make_task("multilabel", ["a", "b", "c"]), truth, np.stack([good, noise]))
    assert weights.sum() == pytest.approx(1.0) and weights[0] > 0.95


def test_new_items_score_as_the_ensemble_scored_its_test_items(trained, tmp_path):
    root, runs = trained
    spec = EnsembleSpec("pair", FAMILIES, {c: [n for n, r in runs.items() if r.configuration == c]
                                           for c in ("g-sig-sum", "g-sig-logreg")},
                        ["g-sig-sum", "g-sig-logreg"], "fitted", "pair")
    build_ensemble(spec, root / "runs", root / "runs" / "pair")
    ensemble = read_ensemble(root / "runs" / "pair")
    assert len(ensemble.members) == 4 and ensemble.config["features"] == FEATURES
    manifest = read_manifest(root / "manifest.parquet")
    test = manifest.split("test")
    from mmsets.data.manifest import Manifest

    new = Manifest(test.reset_index(drop=True), manifest.label_names, manifest.task, manifest.dataset)
    with open_stores({n: root / f"{n}.h5" for n in FEATURES}) as stores:
        scored = predict_items(ensemble, new, stores)
    expected = _rows(root, "pair", "test").set_index("id").loc[scored.ids, manifest.label_names].to_numpy()
    np.testing.assert_allclose(scored.outputs, expected, atol=1e-5)
    assert scored.decision.to_dict() == read_json(root / "runs" / "pair" / "ensemble.json")["decision"]


def test_k_fold_members_are_combined_fold_by_fold(tmp_path):
    from mmsets.plan.spec import CVConfig

    root = write_synthetic_sets(tmp_path / "data", "binary", n_items=150)
    names = []
    for seed in (0, 1):
        spec = _spec("g-sig-logreg", seed, CVConfig(folds=3))
        spec.settings["C"] = [0.1, 1.0][seed]  # two different members
        train_run(root / "manifest.parquet", {n: root / f"{n}.h5" for n in FEATURES}, tmp_path / "runs" / spec.name,
                  spec)
        names.append(spec.name)
    ensemble = EnsembleSpec("g-sig-logreg-seeds", SEEDS, {"g-sig-logreg": names}, ["g-sig-logreg"])
    record = build_ensemble(ensemble, tmp_path / "runs", tmp_path / "runs" / ensemble.name)
    assert len(record.folds) == 3 and record.cv["folds"] == 3 and record.test_pooled["accuracy"] is not None
    assert record.n_items["total"] == 150
    summary = read_json(tmp_path / "runs" / ensemble.name / "ensemble.json")
    assert [f["fold"] for f in summary["folds"]] == [0, 1, 2]


def test_members_scored_on_other_items_are_refused(trained, tmp_path):
    root, runs = trained
    for name in ("g-sig-max-s0", "g-sig-max-s1"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_bytes((root / "runs" / name / "metrics.json").read_bytes())
        rows = pd.read_parquet(root / "runs" / name / "predictions.parquet")
        rows.iloc[: (len(rows) if name.endswith("s0") else -1)].to_parquet(tmp_path / name / "predictions.parquet")
    spec = EnsembleSpec("x", SEEDS, {"g-sig-max": ["g-sig-max-s0", "g-sig-max-s1"]}, ["g-sig-max"])
    with pytest.raises(EnsembleError, match="g-sig-max-s1 was scored on other test items"):
        build_ensemble(spec, tmp_path, tmp_path / "x")


def test_an_ensemble_spec_names_what_is_wrong():
    with pytest.raises(SpecError, match=r"members \['nope'\] are not configurations"):
        EnsembleSpec("e", FAMILIES, {"a": ["a-s0"]}, ["nope"])
    with pytest.raises(SpecError, match="weights 'heavy'"):
        EnsembleSpec("e", FAMILIES, {"a": ["a-s0"]}, BEST_PER_FAMILY, "heavy")
    with pytest.raises(SpecError, match=r"from: \['missing'\]"):
        expand_ensembles({"e": {"model": "ensemble", "from": ["missing"]}}, ["e"], {})


def test_the_report_shows_each_ensemble_with_its_members_and_weights(trained, tmp_path):
    from mmsets.report import build_report, report_context

    root, runs = trained
    experiments = {"g": {"model": "dmms"}, "ens": {"model": "ensemble"}}
    specs = expand_ensembles(experiments, ["g", "ens"], runs)
    for spec in specs.values():
        build_ensemble(spec, root / "runs", tmp_path / "runs" / spec.name)
    dirs = [root / "runs" / name for name in runs] + [tmp_path / "runs" / name for name in specs]
    ctx = report_context(root / "manifest.parquet", dirs, {})
    rows = {c["name"]: c for c in ctx["configs"]}
    assert rows["ens"]["ensemble"]["kind"] == "families" and rows["ens"]["family"] == "ensemble"
    assert sum(m["weight"] for m in rows["ens"]["ensemble"]["members"]) == pytest.approx(1.0)
    assert rows["g-sig-max-seeds"]["ensemble"]["kind"] == "seeds"
    assert not [p for r in ctx["runs"] for p in r["problems"]]  # an ensemble has no model.pt of its own
    html = build_report(root / "manifest.parquet", dirs, {}, tmp_path / "report.html").read_text()
    assert 'id="ensembles"' in html and "g-sig-max-seeds" in html
