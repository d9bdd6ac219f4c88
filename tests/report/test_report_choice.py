"""The report chooses on dev only: permuting the runs' test scores changes no choice it makes."""

import numpy as np
import pytest

from mmsets.io import read_json, write_json
from mmsets.report import report_context
from test_report import make_lightgbm, make_manifest, make_run, make_stores


def _choices(ctx):
    """Every choice the report makes, by name."""
    configs = ctx["configs"]
    return {
        "order": [c["name"] for c in configs],
        "best": [c["name"] for c in configs if c["best"]],
        "tied": [c["name"] for c in configs if c["tied"]],
        "families": [c["name"] for c in ctx["families"]],
        "per_label": [c["name"] for c in ctx["per_label"]["configs"]] if ctx["per_label"] else None,
        "runs": [r["name"] for r in ctx["runs"]],
        "best_runs": [r["name"] for r in ctx["runs"] if r["best"]],
        "examples": ctx["examples"]["run"] if ctx["examples"] else None,
        "fi_matrix": ctx["fi_matrix"]["run"] if ctx["fi_matrix"] else None,
    }


@pytest.fixture
def tree(tmp_path):
    manifest = tmp_path / "manifest.parquet"
    stores = make_stores(tmp_path, make_manifest(manifest))
    root = tmp_path / "runs"
    rng = np.random.default_rng(7)
    runs = []
    for pooling in ("max", "sum", "mean"):
        for seed in range(3):
            runs.append(make_run(root, f"dmms-image_plot-{pooling}-s{seed}", pooling, seed,
                                 float(rng.uniform(0.4, 0.7)), fi=pooling == "max"))
    runs.append(make_lightgbm(root, "baselines-image_plot-lightgbm-s0", 0.55))
    for k, run in enumerate(runs):  # dev scores that disagree with test about the order
        metrics = read_json(run / "metrics.json")
        metrics["dev"]["f1_micro"] = float(rng.uniform(0.4, 0.7))
        write_json(run / "metrics.json", metrics)
    return manifest, runs, stores


def test_permuting_the_test_scores_leaves_every_choice_unchanged(tree):
    manifest, runs, stores = tree
    before = _choices(report_context(manifest, runs, stores))
    tests = [read_json(run / "metrics.json")["test"] for run in runs]
    order = np.random.default_rng(1).permutation(len(runs))
    assert (order != np.arange(len(runs))).any()
    for run, k in zip(runs, order):
        metrics = read_json(run / "metrics.json")
        metrics["test"] = tests[k]
        write_json(run / "metrics.json", metrics)
    ctx = report_context(manifest, runs, stores)
    assert _choices(ctx) == before
    # and the choice is the dev one: the best configuration has the highest mean dev F1-micro
    dev = {c["name"]: c["dev"]["mean"] for c in ctx["configs"] if c["dev"]["mean"] is not None}
    assert before["best"] == [max(dev, key=dev.get)]
    assert before["order"][: len(dev)] == sorted(dev, key=dev.get, reverse=True)


def test_a_single_class_run_is_flagged(tree):
    manifest, runs, stores = tree
    metrics = read_json(runs[0] / "metrics.json")
    metrics["test"]["n_predicted_classes"] = 1
    write_json(runs[0] / "metrics.json", metrics)
    ctx = report_context(manifest, runs, stores)
    flagged = [c["name"] for c in ctx["configs"] if c["single_class"]]
    assert flagged == ["dmms-image_plot-max"]
    assert ctx["runs"][[r["name"] for r in ctx["runs"]].index(runs[0].name)]["single_class"]
