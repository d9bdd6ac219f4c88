import re
import statistics

import numpy as np
import pandas as pd
import pytest

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.io import write_json
from mmsets.report import build_report, report_context
from mmsets.store import RaggedWriter

LABELS = ["Drama", "Comedy", "Sci$Fi"]
EVIL_PLOT = 'A plot <script>alert(1)</script> then "><img src=x onerror=alert(2)> and more'
EVIL_OCR = "</span><script>alert(3)</script>"


def make_manifest(path):
    rows = []
    for i in range(12):
        split = ["train"] * 6 + ["dev"] * 2 + ["test"] * 4
        rows.append({
            "id": f"tt{i}",
            "split": split[i],
            "image": None if i in (1, 9) else f"img/{i}.jpg",
            "text_plot": EVIL_PLOT if i == 8 else ("" if i == 2 else f"plot {i} " + "long " * 100),
            "text_title": f"title {i}",
            "labels": [LABELS[i % 3]] + (["Drama"] if i % 4 == 0 and i % 3 else []),
        })
    write_manifest(Manifest(pd.DataFrame(rows), LABELS, "multilabel", "demo"), path)
    return [r["id"] for r in rows]


def make_stores(tmp_path, ids):
    image = tmp_path / "features" / "image.h5"
    with RaggedWriter(image, extractor="image", dim=4, model="efficientnet_lite0",
                      params={"size": 224, "api_key": "SECRET123"}) as w:
        for i, item in enumerate(ids):
            w.add(item, np.ones((0 if i in (1, 9) else 1, 4)))
    ocr = tmp_path / "features" / "ocr.h5"
    w = RaggedWriter(ocr, extractor="ocr", dim=2, model="tesseract", params={"lang": "eng"},
                     fields={"text": ((), "str")})
    for i, item in enumerate(ids):
        words = [EVIL_OCR, "word"] if item == "tt8" else (["hello"] * (i % 3))
        w.add(item, np.zeros((len(words), 2)), text=words)
    w.close(items=12, with_elements=8, elements=14, skipped={"no_image": 2, "no_text": 2},
            errors=[{"id": "tt1", "reason": "corrupt <b>image</b>"}], items_per_s=12.5, seconds=0.96, device="cpu")
    return {"image": str(image), "ocr": str(ocr), "faces": str(tmp_path / "features" / "faces.h5")}


def origin(name, model, pooling):
    """Where a fixture run comes from, as the workflow records it (group, combination, variant)."""
    parts = name.rsplit("-s", 1)[0].split("-")
    rest = parts[2:][1:] if model == "dmms" and parts[2:] and parts[2] == pooling else parts[2:]
    return {"group": parts[0], "combination": parts[1], **({"variant": "-".join(rest)} if rest else {})}


def make_run(root, name, pooling, seed, f1, fi=True, f1_macro=0.6133):
    run = root / name
    run.mkdir(parents=True)
    write_json(run / "metrics.json", {
        "run": name, "task": "multilabel", "model": "dmms", "features": ["image", "plot"], "pooling": pooling,
        **origin(name, "dmms", pooling), "seed": seed, "epochs": 10, "best_epoch": 7, "threshold": 0.5,
        "top1_rule": {"tried": True, "applied": seed == 1}, "n_params": 123456, "train_seconds": 42.5,
        "model_config": {"pooling": pooling, "d_model": 8},
        "dev": {"f1_micro": f1 - 0.01, "f1_macro": 0.5, "f1_samples": 0.6, "loss": 0.3},
        "test": {"f1_micro": f1, "f1_macro": f1_macro, "f1_samples": 0.6763},
        "history": [{"epoch": e, "train_loss": 1 / e, "dev_f1_micro": f1 * e / 10} for e in range(1, 11)],
    })
    (run / "model.pt").write_bytes(b"")
    test_ids = [f"tt{i}" for i in range(8, 12)]
    preds = pd.DataFrame({"id": test_ids, "split": "test", "Drama": [0.9, 0.2, 0.7, 0.1],
                          "Comedy": [0.1, 0.8, 0.3, 0.6], "Sci$Fi": [0.05, 0.4, 0.2, 0.55],
                          "labels": [["Sci$Fi"], ["Drama"], ["Comedy", "Drama"], ["Sci$Fi"]]})
    preds.to_parquet(run / "predictions.parquet")
    if fi:
        share = {"image": 0.4, "plot": 0.6}
        write_json(run / "feature_importance.json", {
            "modalities": ["image", "plot"], "pooling": pooling, "kind": "argmax", "mean_share": share,
            "per_item": {"ids": test_ids, "shares": [[0.25, 0.75]] * 4}})
    else:
        write_json(run / "feature_importance.json", {"modalities": ["image", "plot"], "pooling": pooling,
                                                      "mean_share": None})
    return run


def make_lightgbm(root, name, f1):
    """A fitted baseline: no epochs, no history, LightGBM gain shares without per-item shares."""
    run = root / name
    run.mkdir(parents=True)
    write_json(run / "metrics.json", {
        "run": name, "task": "multilabel", "model": "lightgbm", "features": ["image", "plot"], "pooling": "mean",
        **origin(name, "lightgbm", "mean"), "seed": 0, "epochs": None, "best_epoch": None, "threshold": 0.35, "n_params": 0, "train_seconds": 3.2,
        "model_config": {"pooling": "mean", "num_leaves": 31}, "boosting_rounds": [120],
        "dev": {"f1_micro": f1, "f1_macro": 0.4, "f1_samples": 0.5, "loss": 0.2},
        "test": {"f1_micro": f1, "f1_macro": 0.41, "f1_samples": 0.52}, "history": [],
    })
    (run / "model.pt").write_bytes(b"")
    pd.DataFrame({"id": ["tt8"], "split": "test", "Drama": [0.5], "Comedy": [0.2], "Sci$Fi": [0.3],
                  "labels": [["Drama"]]}).to_parquet(run / "predictions.parquet")
    write_json(run / "feature_importance.json", {"modalities": ["image", "plot"], "pooling": "mean", "kind": "gain",
                                                  "mean_share": {"image": 0.7, "plot": 0.3}})
    return run


MAX_F1 = [0.6773, 0.6701, 0.6652]
MAX_MACRO = [0.6133, 0.6021, 0.5900]


@pytest.fixture
def inputs(tmp_path):
    manifest = tmp_path / "manifest.parquet"
    ids = make_manifest(manifest)
    stores = make_stores(tmp_path, ids)
    runs_root = tmp_path / "runs"
    runs = [make_run(runs_root, "dmms-image_plot-sum-s0", "sum", 0, 0.6512, fi=False)]
    runs += [make_run(runs_root, f"dmms-image_plot-max-s{s}", "max", s, f1, f1_macro=macro)
             for s, (f1, macro) in enumerate(zip(MAX_F1, MAX_MACRO))]
    runs.append(make_lightgbm(runs_root, "baselines-image_plot-lightgbm-s0", 0.6401))
    broken = runs_root / "dmms-image_plot-min-s0"
    broken.mkdir()  # training crashed before writing anything
    runs += [broken, runs_root / "never_ran"]
    return manifest, runs, stores


def _row(html, first_cell):
    return re.search(r"<tr[^>]*>\s*<td>" + re.escape(first_cell) + r"</td>(.*?)</tr>", html, re.S).group(1)


def test_report_shows_metrics_fi_coverage_and_stores(inputs, tmp_path):
    manifest, runs, stores = inputs
    out = build_report(manifest, runs, stores, tmp_path / "out" / "report.html")
    html = out.read_text()
    ctx = report_context(manifest, runs, stores)

    assert "mmsets report: demo" in html
    # Results over seeds: one row per configuration, mean ± sample std over its three seeds.
    configs = {c["name"]: c for c in ctx["configs"]}
    best = configs["dmms-image_plot-max"]
    assert best["n"] == 3 and best["seeds"] == [0, 1, 2] and best["best"]
    assert best["test"]["f1_micro"]["mean"] == pytest.approx(statistics.fmean(MAX_F1))
    assert best["test"]["f1_micro"]["std"] == pytest.approx(statistics.stdev(MAX_F1))
    assert best["test"]["f1_macro"]["std"] == pytest.approx(statistics.stdev(MAX_MACRO))
    assert configs["dmms-image_plot-sum"]["test"]["f1_micro"]["std"] is None  # one seed: no std
    # a run that wrote nothing cannot say which configuration it belongs to: a row of its own
    assert configs["dmms-image_plot-min-s0"]["n"] == 0 and configs["dmms-image_plot-min-s0"]["n_failed"] == 1
    assert [c["name"] for c in ctx["configs"]][:3] == [
        "dmms-image_plot-max", "dmms-image_plot-sum", "baselines-image_plot-lightgbm"]
    cell = f"{100 * statistics.fmean(MAX_F1):.2f} ± {100 * statistics.stdev(MAX_F1):.2f}"
    best_row = re.search(r'<tr class="best">(.*?)</tr>', html, re.S).group(1)
    assert "dmms-image_plot-max" in best_row and cell in best_row

    # Best configuration per family, LightGBM beside DMMS.
    assert [(c["family"], c["name"]) for c in ctx["families"]] == [
        ("DMMS", "dmms-image_plot-max"), ("LightGBM", "baselines-image_plot-lightgbm")]
    assert "Best configuration per model family" in html

    # The per-run table keeps every run with its own scores.
    for text in ("dmms-image_plot-max-s0", "65.12", "61.33", "67.63", "123,456", "42.5"):
        assert text in html
    assert "67.73" in _row(html, "dmms-image_plot-max-s0")
    assert "metrics.json missing" in html and "run directory missing" in html
    assert "no test F1-micro" not in _row(html, "baselines-image_plot-lightgbm-s0")
    assert html.count("0.50 + top-1") == 1

    # Feature importance by kind, mean over seeds.
    kinds = {g["kind"]: g for g in ctx["fi"]["groups"]}
    assert list(kinds) == ["argmax", "gain"]
    assert kinds["argmax"]["rows"][0]["shares"][0]["mean"] == pytest.approx(0.4)
    assert "LightGBM gain share" in html and "70.00" in html and "40.00 ± 0.00" in html
    assert {"config": "dmms-image_plot-sum", "note": "n/a (sum pooling)"} in ctx["fi"]["missing"]
    assert "n/a (sum pooling)" in html

    cov = {row["name"]: row["counts"] for row in ctx["coverage"]["rows"]}
    assert ctx["coverage"]["splits"] == ["train", "dev", "test", "all"]
    assert cov["items"] == [6, 2, 4, 12]
    assert cov["with image"] == [5, 2, 3, 10]
    assert cov["with text: plot"] == [5, 2, 4, 11]
    stores_by_name = {s["name"]: s for s in ctx["stores"]}
    assert stores_by_name["image"]["with_elements"] == 10 and stores_by_name["image"]["max"] == 1
    assert stores_by_name["faces"]["status"] == "missing"
    assert "no_image: 2" in html and "12.50" in html and "efficientnet_lite0" in html

    assert "SECRET123" not in html and "api_key=***" in html


def test_report_is_self_contained_and_escapes_item_text(inputs, tmp_path):
    manifest, runs, stores = inputs
    html = build_report(manifest, runs, stores, tmp_path / "report.html").read_text()

    assert 'src="http' not in html and 'href="http' not in html
    assert "<link" not in html and "<script" not in html and "@import" not in html
    # configurations, precision-recall curves, learning curves, argmax FI, LightGBM gain, labels
    assert html.count('src="data:image/svg+xml;base64,') == 6

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<img src=x" not in html and "onerror=alert(2)>" not in html
    assert "&lt;/span&gt;&lt;script&gt;alert(3)" in html  # OCR text from the store
    assert "corrupt &lt;b&gt;image&lt;/b&gt;" in html  # extractor error reasons too
    assert "long " * 80 not in html  # item text is truncated


def test_report_renders_without_runs_or_inputs(tmp_path):
    out = build_report(tmp_path / "no_manifest.parquet", [], {"image": tmp_path / "image.h5"}, tmp_path / "r.html")
    html = out.read_text()
    assert "No runs were given." in html and "No finished run with predictions." in html
    assert "no_manifest.parquet missing" in html
    assert "file missing" in html
    assert "<script" not in html


def test_report_shows_broken_inputs_as_such(inputs, tmp_path):
    manifest, runs, _ = inputs
    w = RaggedWriter(tmp_path / "partial.h5", extractor="faces", dim=2)
    w.add("tt0", np.zeros((1, 2)))
    w.abort()
    (tmp_path / "garbage.h5").write_bytes(b"not hdf5")
    (runs[0] / "metrics.json").write_text("{truncated")
    (runs[1] / "predictions.parquet").write_bytes(b"not parquet")

    ctx = report_context(manifest, runs, {"faces": tmp_path / "partial.h5", "ocr": tmp_path / "garbage.h5"})
    assert [s["status"] for s in ctx["stores"]] == ["incomplete", "unreadable"]
    by_name = {r["dir"].split("/")[-1]: r for r in ctx["runs"]}
    assert by_name["dmms-image_plot-sum-s0"]["status"] == "failed"
    assert any("predictions.parquet unreadable" in p for p in by_name["dmms-image_plot-max-s0"]["problems"])
    assert ctx["examples"]["run"] == "dmms-image_plot-max-s1"  # falls back to the next run whose predictions read


def test_report_survives_corrupt_metrics_and_importance(inputs, tmp_path):
    manifest, runs, stores = inputs
    write_json(runs[1] / "metrics.json", {"run": runs[1].name, "task": "multilabel", "model": "dmms", "test": [1, 2],
                                          "dev": "x", "folds": 3, "cv": "yes", "history": "no", "seed": "zero"})
    write_json(runs[2] / "feature_importance.json", {"modalities": ["image"], "kind": "argmax",
                                                     "mean_share": [0.3], "per_item": "bad"})
    write_json(runs[3] / "feature_importance.json", {"modalities": ["image", "plot"], "kind": "argmax",
                                                     "mean_share": {"image": 0.5, "plot": 0.5},
                                                     "per_item": {"ids": ["tt8"], "shares": [["<b>", None]]}})
    html = build_report(manifest, runs, {}, tmp_path / "r.html").read_text()
    assert "metrics.json has no test F1-micro" in html
    assert "feature_importance.json unreadable" in html
    assert "<b>" not in html
