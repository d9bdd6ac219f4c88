"""The report for each task type, k-fold runs, DM2S2 ablations and baselines (fake run directories)."""

import re
import statistics

import numpy as np
import pandas as pd
import pytest

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.io import write_json
from mmsets.report import build_report, report_context
from mmsets.store import RaggedWriter

SPLITS = ["train"] * 6 + ["dev"] * 2 + ["test"] * 4
TEST_IDS = [f"ad{i}" for i in range(8, 12)]


def make_manifest(path, task):
    frame = pd.DataFrame({"id": [f"ad{i}" for i in range(12)], "split": SPLITS,
                          "image": [f"img/{i}.jpg" for i in range(12)],
                          "text_plot": [f"text {i} <em>" for i in range(12)]})
    if task == "regression":
        frame["labels"] = [[] for _ in range(12)]
        frame["target"] = [float(i) for i in range(11)] + [None]
        names = []
    else:
        names = ["neg", "pos"] if task == "binary" else ["Drama", "Comedy"]
        frame["labels"] = [[names[i % 2]] for i in range(12)]
    write_manifest(Manifest(frame, names, task, f"demo_{task}"), path)
    return path


def origin(name, model, pooling):
    """Where a fixture run comes from, as the workflow records it (group, combination, variant)."""
    parts = name.rsplit("-s", 1)[0].split("-")
    rest = parts[2:][1:] if model == "dmms" and parts[2:] and parts[2] == pooling else parts[2:]
    return {"group": parts[0], "combination": parts[1], **({"variant": "-".join(rest)} if rest else {})}


def write_run(root, name, model, task, test, dev, seed=0, features=("image",), pooling="max", model_config=None,
              fi=None, preds=None, **extra):
    run = root / name
    run.mkdir(parents=True)
    write_json(run / "metrics.json", {
        "run": name, "task": task, "model": model, "features": list(features), "pooling": pooling, "seed": seed,
        **origin(name, model, pooling),
        "epochs": 5, "best_epoch": 3, "threshold": None, "n_params": 1000, "train_seconds": 1.0,
        "model_config": model_config or {"pooling": pooling}, "dev": dev, "test": test,
        "history": [{"epoch": e, "dev_loss": 1.0 / e} for e in range(1, 6)], **extra})
    (run / "model.pt").write_bytes(b"")
    if preds is not None:
        preds.to_parquet(run / "predictions.parquet")
    write_json(run / "feature_importance.json", fi or {"modalities": list(features), "pooling": pooling,
                                                       "mean_share": None})
    return run


def single_label(acc, auc=0.8):
    return {"accuracy": acc, "balanced_accuracy": acc - 0.05, "auc": auc, "f1_macro": acc - 0.1,
            "per_class_accuracy": {"neg": acc + 0.1, "pos": acc - 0.2}}


def cv_run(root, name, seed, fold_acc, folds_field=None, pooling="max"):
    folds = [{"fold": k, "epochs": 5, "best_epoch": 3, "threshold": None, "dev": single_label(a),
              "test": single_label(a)} for k, a in enumerate(fold_acc)]
    mean = single_label(statistics.fmean(fold_acc))
    std = {k: statistics.stdev([f["test"][k] for f in folds]) for k in ("accuracy", "balanced_accuracy", "f1_macro")}
    preds = pd.DataFrame({"id": TEST_IDS, "split": "test", "fold": [0, 0, 1, 2], "neg": [0.8, 0.3, 0.6, 0.1],
                          "pos": [0.2, 0.7, 0.4, 0.9], "labels": [["neg"], ["neg"], ["neg"], ["pos"]]})
    return write_run(root, name, "dmms", "binary", mean, mean, seed=seed, preds=preds, pooling=pooling,
                     cv={"folds": len(fold_acc), "seed": 0, "dev_fraction": 0.1}, test_std=std, dev_std=std,
                     test_pooled=single_label(0.7), folds=folds if folds_field is None else folds_field)


def test_binary_cv_runs_show_accuracy_over_folds_and_seeds(tmp_path):
    manifest = make_manifest(tmp_path / "manifest.parquet", "binary")
    root = tmp_path / "runs"
    s0, s1 = [0.70, 0.80, 0.75], [0.60, 0.90, 0.80]
    runs = [cv_run(root, "dmms-image-max-s0", 0, s0), cv_run(root, "dmms-image-max-s1", 1, s1),
            cv_run(root, "dmms-image-sum-s0", 0, [0.5, 0.6, 0.55], folds_field="garbage", pooling="sum")]
    runs.append(write_run(root, "baselines-image-logreg-s0", "logreg", "binary", single_label(0.65),
                          single_label(0.6), pooling="mean", epochs=None, best_epoch=None))
    ctx = report_context(manifest, runs, {})
    html = build_report(manifest, runs, {}, tmp_path / "report.html").read_text()

    assert ctx["task"] == "binary" and [m.key for m in ctx["metrics"]] == [
        "accuracy", "balanced_accuracy", "auc", "f1_macro"]
    configs = {c["name"]: c for c in ctx["configs"]}
    best = configs["dmms-image-max"]
    assert ctx["configs"][0] is best and best["best"] and best["cv"]
    assert best["n"] == 2 and best["n_folds"] == 6  # every fold of both seeds
    assert best["test"]["accuracy"]["mean"] == pytest.approx(statistics.fmean(s0 + s1))
    assert best["test"]["accuracy"]["std"] == pytest.approx(statistics.stdev(s0 + s1))
    assert best["per_class"]["neg"]["mean"] == pytest.approx(statistics.fmean(s0 + s1) + 0.1)
    # unreadable folds: the run's own mean ± std over folds
    fallback = configs["dmms-image-sum"]
    assert fallback["test"]["accuracy"]["mean"] == pytest.approx(0.55)
    assert fallback["test"]["accuracy"]["std"] == pytest.approx(statistics.stdev([0.5, 0.6, 0.55]))

    cell = f"{100 * statistics.fmean(s0 + s1):.2f} ± {100 * statistics.stdev(s0 + s1):.2f}"
    assert cell in re.search(r'<tr class="best">(.*?)</tr>', html, re.S).group(1)
    assert "test accuracy (%)" in html and "test AUC (%)" in html and "F1-micro" not in html
    assert "no test" not in html  # single-label runs are not missing anything
    assert "3-fold CV: mean ± std over folds" in html and "pooled test accuracy 70.00" in html
    assert "Per-class accuracy" in html and "2 (6 folds)" in html
    assert "logistic regression" in html  # best configuration per family

    ex = ctx["examples"]
    assert ex["run"] == "dmms-image-max-s1" and ex["task"] == "binary"  # the best run: mean 76.67 over folds
    first = ex["items"][0]
    assert first["pred_class"] == "neg" and first["pred_p"] == pytest.approx(0.8) and first["correct"]
    assert ex["items"][1]["pred_class"] == "pos" and not ex["items"][1]["correct"]
    assert "neg 80%</span> correct" in html and "(fold 1)" in html
    assert "text 8 &lt;em&gt;" in html


def regression(rmse):
    return {"rmse": rmse, "mae": rmse * 0.8, "mape": 0.25, "r2": 0.5}


def test_regression_ranks_by_rmse_ascending_and_shows_targets(tmp_path):
    manifest = make_manifest(tmp_path / "manifest.parquet", "regression")
    root = tmp_path / "runs"
    preds = pd.DataFrame({"id": TEST_IDS, "split": "test", "prediction": [8.5, 9.0, 9.5, 12.0],
                          "target": [8.0, 9.0, 10.0, 11.0]})
    runs = [write_run(root, f"dmms-image-max-s{s}", "dmms", "regression", regression(r), regression(r), seed=s,
                      preds=preds) for s, r in enumerate([1.5, 1.7])]
    runs.append(write_run(root, "dmms-image-sum-s0", "dmms", "regression", regression(1.2), regression(1.3),
                          pooling="sum", preds=preds))
    ctx = report_context(manifest, runs, {})
    html = build_report(manifest, runs, {}, tmp_path / "report.html").read_text()

    assert [m.key for m in ctx["metrics"]] == ["rmse", "mae", "mape", "r2"]  # no AUC without auc_threshold
    assert [c["name"] for c in ctx["configs"]] == ["dmms-image-sum", "dmms-image-max"]  # lower RMSE first
    assert ctx["configs"][0]["best"] and not ctx["configs"][1]["best"]
    assert ctx["configs"][1]["test"]["rmse"]["std"] == pytest.approx(statistics.stdev([1.5, 1.7]))
    assert "1.600 ± 0.1414" in html and "lower is better" in html and "test RMSE" in html
    assert ctx["runs"][0]["name"] == "dmms-image-sum-s0" and ctx["runs"][0]["best"]
    cov = {row["name"]: row["counts"] for row in ctx["coverage"]["rows"]}
    assert cov["with target"] == [6, 2, 3, 11]

    items = ctx["examples"]["items"]
    assert (items[0]["target"], items[0]["prediction"], items[0]["error"]) == (8.0, 8.5, 0.5)
    assert "target <strong>8.000</strong> · predicted <strong>8.500</strong> · error +0.5" in html

    # Without a manifest the runs name the task.
    bare = report_context(tmp_path / "gone.parquet", runs, {})
    assert bare["task"] == "regression" and bare["configs"][0]["name"] == "dmms-image-sum"
    assert bare["examples"]["items"][0]["target"] == 8.0


def sequence_run(root, name, model, f1, seed=0, attention=None, **config):
    cfg = {"pooling": "mean", **config}
    fi = None
    if attention is not None:
        modalities = ["text:plot", "ocr", 'faces"<x>']
        fi = {"modalities": modalities, "pooling": "mean", "kind": "inter_attention",
              "mean_share": dict(zip(modalities, attention)),
              "per_item": {"ids": TEST_IDS, "shares": [attention] * 4}}
    scores = {"f1_micro": f1, "f1_macro": f1 - 0.1, "f1_samples": f1 - 0.05}
    preds = pd.DataFrame({"id": TEST_IDS, "split": "test", "Drama": [0.9, 0.1, 0.6, 0.2],
                          "Comedy": [0.2, 0.8, 0.3, 0.7], "labels": [["Comedy"], ["Drama"], ["Comedy"], ["Drama"]]})
    return write_run(root, name, model, "multilabel", scores, scores, seed=seed, features=("tokens",), pooling="mean",
                     model_config=cfg, fi=fi, preds=preds, threshold=0.5)


def make_token_store(path, ids):
    w = RaggedWriter(path, extractor="tokens", dim=2, model="all-MiniLM-L6-v2")
    for item in ids:
        w.add(item, np.zeros((3, 2)))
    w.close(items=12, with_elements=12, elements=36, skipped={"no_face": 4, "no_text": 1, "no_label": 2},
            errors=[{"id": "ad3", "reason": "no_face", "detail": "<face>"}], items_per_s=3.0, seconds=4.0, device="cpu",
            resumed=0, tokens_per_item={"mean": 12.5, "max": 20}, truncated={"text:plot": 3, "ocr": 0},
            unknown={"genre": {"<odd>": 2}}, listed=[1, 2, 3], deep={"a": {"b": {"c": 1}}})
    return path


def test_dm2s2_ablations_baselines_and_inter_attention(tmp_path):
    manifest = make_manifest(tmp_path / "manifest.parquet", "multiclass")
    root = tmp_path / "runs"
    runs = [
        sequence_run(root, "dm2s2-tokens-s0", "dm2s2", 0.70, 0, [0.5, 0.3, 0.2]),
        sequence_run(root, "dm2s2-tokens-s1", "dm2s2", 0.72, 1, [0.4, 0.4, 0.2]),
        sequence_run(root, "dm2s2-tokens-dot-s0", "dm2s2", 0.69, attention=[0.6, 0.2, 0.2], similarity="dot"),
        sequence_run(root, "dm2s2-tokens-intra-s0", "dm2s2", 0.66, intra=True, inter=False),
        sequence_run(root, "dm2s2-tokens-inter-s0", "dm2s2", 0.67, attention=[0.3, 0.3, 0.4], intra=False),
        sequence_run(root, "dm2s2-tokens-nores-s0", "dm2s2", 0.68, attention=[0.5, 0.25, 0.25], residual=False),
        sequence_run(root, "dm2s2-tokens-encoder-s0", "encoder_only", 0.64),
        sequence_run(root, "dmms-image_text-max-s0", "dmms", 0.705),
        sequence_run(root, "baselines-image_text-gmu-s0", "gmu", 0.62),
        sequence_run(root, "baselines-image_text-lightgbm-s0", "lightgbm", 0.60),
    ]
    write_json(runs[8] / "feature_importance.json", {"modalities": ["image", "text"], "kind": "gate",
                                                     "mean_share": {"image": 0.3, "text": 0.7}})
    # The manifest says multiclass but these runs say multilabel: a mismatch is a problem to show.
    stores = {"tokens": make_token_store(tmp_path / "tokens.h5", [f"ad{i}" for i in range(12)])}
    ctx = report_context(manifest, runs, stores)
    assert any("differs from the report's multiclass" in p for p in ctx["runs"][0]["problems"])

    manifest = make_manifest(tmp_path / "manifest.parquet", "multilabel")
    ctx = report_context(manifest, runs, stores)
    html = build_report(manifest, runs, stores, tmp_path / "report.html").read_text()

    ab = ctx["ablations"]
    labels = [r["label"] for r in ab["rows"]]
    assert labels == [
        "encoder only",
        "encoder + IntraMRA (additive similarity)",
        "encoder + InterMRA (additive similarity)",
        "encoder + IntraMRA + InterMRA (additive similarity)",
        "encoder + IntraMRA + InterMRA (additive similarity, no residual)",
        "encoder + IntraMRA + InterMRA (dot similarity)",
    ]
    full = ab["rows"][3]
    assert full["name"] == "dm2s2-tokens" and full["n"] == 2 and full["ablation_best"]
    assert full["test"]["f1_micro"]["mean"] == pytest.approx(0.71)
    assert full["delta"] == pytest.approx(0.71 - 0.64)
    assert [c["family"] for c in ab["compare"]] == ["DMMS", "GMU", "LightGBM"]
    for label in labels:
        assert label in html
    assert "+7.00" in html  # Δ F1-micro to encoder only, in points

    inter = ctx["inter"]
    assert inter["modalities"] == ["text:plot", "ocr", 'faces"<x>']
    assert [r["config"] for r in inter["rows"]] == [  # in ablation order
        "dm2s2-tokens-inter", "dm2s2-tokens", "dm2s2-tokens-nores", "dm2s2-tokens-dot"]
    row = inter["rows"][1]
    assert row["shares"][0]["mean"] == pytest.approx(0.45)
    assert row["shares"][0]["std"] == pytest.approx(statistics.stdev([0.5, 0.4]))
    assert "Mean InterMRA attention per modality" in html and "45.00 ± 7.07" in html
    assert "faces&#34;&lt;x&gt;" in html and '"<x>' not in html
    assert ctx["figures"]["inter"] and html.count(ctx["figures"]["inter"]) == 1

    fams = [c["family"] for c in ctx["families"]]
    assert fams == ["DM2S2", "DMMS", "encoder only", "GMU", "LightGBM"]
    assert [g["label"] for g in ctx["fi"]["groups"]] == ["GMU gate", "InterMRA attention"]
    assert "GMU gate" in html and "70.00" in html
    missing = {m["config"]: m["note"] for m in ctx["fi"]["missing"]}
    assert missing["dm2s2-tokens-encoder"] == "n/a (encoder only has no attribution)"

    # Store summary extras: scalars and one or two nested levels, lists and deeper levels left out.
    extra = dict(ctx["stores"][0]["summary"]["extra"])
    assert extra["tokens_per_item.mean"] == 12.5 and extra["truncated.text:plot"] == 3 and extra["resumed"] == 0
    assert extra["unknown.genre.<odd>"] == 2 and "listed" not in extra and not any(k.startswith("deep") for k in extra)
    assert "tokens_per_item.mean=12.50" in html and "no_face: 4" in html and "no_label: 2" in html
    assert "unknown.genre.&lt;odd&gt;=2" in html and "&lt;face&gt;" in html
    assert "<script" not in html and 'src="http' not in html


def test_single_label_predictions_follow_each_runs_own_decision(tmp_path):
    from mmsets.report.collect import load_run
    from mmsets.report.examples import predicted_labels
    from mmsets.report.labels import run_outputs

    manifest = make_manifest(tmp_path / "manifest.parquet", "binary")
    thresholds = [0.25, 0.35, 0.95]
    folds = [{"fold": k, "threshold": t, "decision": {"rule": "threshold", "threshold": t, "metric": "accuracy"},
              "dev": single_label(0.7), "test": single_label(0.7)} for k, t in enumerate(thresholds)]
    kfold = load_run(cv_run(tmp_path / "runs", "dmms-image-max-s0", 0, [0.7] * 3, folds_field=folds), "binary")
    old = load_run(cv_run(tmp_path / "runs", "dmms-image-max-s1", 1, [0.7] * 3), "binary")  # no decision recorded
    preds = pd.read_parquet(kfold["predictions"])  # folds 0, 0, 1, 2; pos 0.2, 0.7, 0.4, 0.9
    tuned = ["neg", "pos", "pos", "neg"]  # each row at its fold's threshold
    rows = [row for _, row in preds.iterrows()]
    assert [predicted_labels(row, kfold, ["neg", "pos"], "binary") for row in rows] == [[c] for c in tuned]
    assert [predicted_labels(row, old, ["neg", "pos"], "binary") for row in rows] == [
        ["neg"], ["pos"], ["neg"], ["pos"]]  # the argmax, as such runs decided
    _, _, decided = run_outputs(kfold, ["neg", "pos"], "binary")
    np.testing.assert_array_equal(decided[:, 1], [c == "pos" for c in tuned])
    ctx = report_context(manifest, [tmp_path / "runs" / "dmms-image-max-s0"], {})
    assert [item["pred_class"] for item in ctx["examples"]["items"]] == tuned
    # a run without folds: its one decision, whatever its rule (here log-offsets, as a multi-class run records)
    run = write_run(tmp_path / "runs", "dmms-image-mean-s0", "dmms", "binary", single_label(0.7), single_label(0.7),
                    pooling="mean", preds=preds.drop(columns="fold"),
                    decision={"rule": "prior", "log_offsets": [0.0, 1.0], "metric": "balanced_accuracy"})
    _, _, decided = run_outputs(load_run(run, "binary"), ["neg", "pos"], "binary")
    np.testing.assert_array_equal(decided[:, 1], [0, 1, 1, 1])  # pos when pos / neg > e^-1 (argmax: 0, 1, 0, 1)
