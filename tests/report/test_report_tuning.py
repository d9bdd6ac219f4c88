"""The report's tuning section (mmsets.report.tuning): each search's trials, its chosen settings, and the tuned
configuration beside the untuned ones, read from results/{dataset}/tune/<search>.json."""

import pandas as pd

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.io import write_json
from mmsets.report import build_report, report_context

EVIL = "<script>alert(1)</script>"  # a setting's value comes from the config: escaped like any text


def _run(root, name, pooling, variant, dev, test, seed=0):
    run = root / "runs" / name
    run.mkdir(parents=True)
    write_json(run / "metrics.json", {
        "run": name, "task": "multilabel", "model": "dmms", "features": ["image"], "pooling": pooling, "seed": seed,
        "group": "dmms", "combination": "image", "variant": variant, "dev": {"f1_micro": dev},
        "test": {"f1_micro": test, "f1_macro": test - 0.1, "f1_samples": test}})
    return run


def _search(root, tuned, untuned):
    trials = [{"number": 0, "state": "complete", "value": 0.5, "params": {"lr": 0.001, "pooling": "max"},
               "duration": 2.0, "epochs": [0.4, 0.5]},
              {"number": 1, "state": "complete", "value": 0.7, "params": {"lr": 0.01, "pooling": EVIL},
               "duration": 2.5, "epochs": [0.6, 0.7]},
              {"number": 2, "state": "pruned", "value": None, "params": {"lr": 1e-6, "pooling": "sum"},
               "duration": 0.5, "epochs": [0.1]}]
    write_json(root / "tune" / "dmms-image.json", {
        "search": "dmms-image", "model": "dmms", "metric": "f1_micro", "direction": "maximize", "objective": "dev",
        "folds": None, "budget": {"trials": 3, "timeout": None}, "n_trials": 3, "best_trial": 1, "best_value": 0.7,
        "best_params": {"lr": 0.01, "pooling": EVIL}, "space": {"lr": {"low": 1e-6, "high": 0.1, "log": True},
                                                                "pooling": {"choices": ["max", "sum", EVIL]}},
        "base": {}, "tuned_runs": tuned, "untuned_runs": untuned, "trials": trials})


def test_the_report_shows_each_search_with_its_tuned_and_untuned_configurations(tmp_path):
    rows = [{"id": f"i{i}", "split": "test", "image": None, "labels": ["a"]} for i in range(4)]
    write_manifest(Manifest(pd.DataFrame(rows), ["a", "b"], "multilabel", "demo"), tmp_path / "manifest.parquet")
    runs = [_run(tmp_path, "dmms-image-max-s0", "max", None, 0.5, 0.52),
            _run(tmp_path, "dmms-image-sum-s0", "sum", None, 0.45, 0.6),
            _run(tmp_path, "dmms-image-tuned-s0", "max", "tuned", 0.7, 0.55)]
    _search(tmp_path, ["dmms-image-tuned-s0"], ["dmms-image-max-s0", "dmms-image-sum-s0"])
    ctx = report_context(tmp_path / "manifest.parquet", runs, {})
    (search,) = ctx["tuning"]
    assert [(r["name"], r["kind"]) for r in search["rows"]] == [
        ("dmms-image-max-tuned", "tuned"), ("dmms-image-max", "untuned"), ("dmms-image-sum", "untuned")]
    assert [t["state"] for t in search["trials"]] == ["complete", "complete", "pruned"]
    assert [t["best"] for t in search["trials"]] == [False, True, False]
    assert search["best_params"] == {"lr": "0.01", "pooling": EVIL}

    html = build_report(tmp_path / "manifest.parquet", runs, {}, tmp_path / "report.html").read_text()
    section = html[html.index('id="tuning"'):]
    assert '<a href="#tuning">' in html and "pruned" in section and "dmms-image-max-tuned" in section
    assert EVIL not in html and "&lt;script&gt;" in section

    # A search of another config (its tuned runs not in the report) is left out; an unreadable one is a problem.
    _search(tmp_path, ["other-run-s0"], [])
    assert report_context(tmp_path / "manifest.parquet", runs, {})["tuning"] == []
    (tmp_path / "tune" / "dmms-image.json").write_text("{")
    (broken,) = report_context(tmp_path / "manifest.parquet", runs, {})["tuning"]
    assert "unreadable" in broken["problem"]
