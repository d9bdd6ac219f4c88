"""Each run's details in the report (settings, split summary, confusion matrix, links, provenance) and the
results table beside it (results.csv)."""

import csv
import io

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from mmsets.report import build_report, report_context
from mmsets.report.export import safe_text

from test_report_tasks import TEST_IDS, make_manifest, single_label, write_run

PROVENANCE = {"mmsets": "0.9", "git_commit": "abc123", "git_dirty": False, "python": "3.11.7",
              "packages": {"torch": "2.14.1", "numpy": "2.1"}, "platform": "Linux", "cpu": "x86_64",
              "cpu_count": 2, "memory_gb": 7.5, "device": "cpu", "gpu": None, "created": "2026-12-07T12:00:00Z",
              "api_token": "never shown"}


def binary_run(root, name, threshold, seed=0, **extra):
    preds = pd.DataFrame({"id": TEST_IDS + ["ad6", "ad7"], "split": ["test"] * 4 + ["dev"] * 2,
                          "neg": [0.8, 0.35, 0.6, 0.1, 0.7, 0.2], "pos": [0.2, 0.65, 0.4, 0.9, 0.3, 0.8],
                          "labels": [["neg"], ["neg"], ["pos"], ["pos"], ["neg"], ["pos"]]})
    decision = {"rule": "threshold", "threshold": threshold, "metric": "accuracy"}
    return write_run(root, name, "dmms", "binary", single_label(0.7), single_label(0.75), seed=seed, preds=preds,
                     decision=decision, training={"lr": 0.001, "epochs": 5, "api_key": "hidden"},
                     n_items={"train": 6, "dev": 2, "test": 4}, **extra)


def test_binary_runs_show_their_confusion_matrix_split_settings_links_and_provenance(tmp_path):
    make_manifest(tmp_path / "manifest.parquet", "binary")
    stores = {"image": {"extractor": "image", "params": {"model": "efficientnet_lite0", "api_key": "sekrit"}}}
    run = binary_run(tmp_path / "runs", "dmms-image-max-s0", threshold=0.38, provenance=PROVENANCE, stores=stores)
    (tmp_path / "logs" / "train").mkdir(parents=True)
    (tmp_path / "logs" / "train" / "dmms-image-max-s0.log").write_text("log")
    ctx = report_context(tmp_path / "manifest.parquet", [run], {}, out_dir=tmp_path)
    details = ctx["runs"][0]["details"]

    truth = [0, 0, 1, 1]
    predicted = (np.array([0.2, 0.65, 0.4, 0.9]) >= 0.38).astype(int)  # the dev-chosen threshold, not 0.5
    assert details["confusion"]["labels"] == ["neg", "pos"]
    assert details["confusion"]["rows"] == confusion_matrix(truth, predicted).tolist() == [[1, 1], [0, 2]]
    assert details["splits"]["splits"] == ["train", "dev", "test"] and details["splits"]["items"] == [6, 2, 4]
    train = ["neg", "pos"] * 3  # make_manifest: items alternate classes; train is the first six
    assert {r["label"]: r["counts"] for r in details["splits"]["rows"]} == {
        "neg": [train.count("neg"), 1, 2], "pos": [train.count("pos"), 1, 2]}
    assert [link["href"] for link in details["links"]] == ["runs/dmms-image-max-s0/",
                                                          "logs/train/dmms-image-max-s0.log"]
    training = dict(next(s for s in details["settings"] if s["title"] == "training")["items"])
    assert training["lr"] == "0.001" and training["api_key"] == "***"
    store = dict(next(s for s in details["settings"] if s["title"] == "store image (image)")["items"])
    assert store == {"api_key": "***", "model": "efficientnet_lite0"}
    fields = dict(details["provenance"]["fields"])
    assert fields["git_commit"] == "abc123" and fields["gpu"] == "–"
    assert [k for k, _ in details["provenance"]["fields"]][:3] == ["mmsets", "git_commit", "git_dirty"]
    assert dict(details["provenance"]["packages"]) == {"numpy": "2.1", "torch": "2.14.1"}

    html = build_report(tmp_path / "manifest.parquet", [run], {}, tmp_path / "report.html").read_text()
    assert 'href="runs/dmms-image-max-s0/"' in html and 'href="logs/train/dmms-image-max-s0.log"' in html
    assert "confusion matrix (test, 4 items)" in html and "abc123" in html and "hidden" not in html
    assert "sekrit" not in html and "efficientnet_lite0" in html


def test_multiclass_confusion_matrix_and_runs_without_details(tmp_path):
    make_manifest(tmp_path / "manifest.parquet", "multiclass")
    preds = pd.DataFrame({"id": TEST_IDS, "split": "test", "Drama": [0.6, 0.3, 0.2, 0.9],
                          "Comedy": [0.4, 0.7, 0.8, 0.1], "labels": [["Drama"], ["Comedy"], ["Drama"], ["Drama"]]})
    run = write_run(tmp_path / "runs", "dmms-image-max-s0", "dmms", "multiclass", single_label(0.7),
                    single_label(0.7), preds=preds)
    old = write_run(tmp_path / "runs", "dmms-image-sum-s0", "dmms", "multiclass", single_label(0.6),
                    single_label(0.6), pooling="sum")  # no predictions, decision or provenance recorded
    ctx = report_context(tmp_path / "manifest.parquet", [run, old], {}, out_dir=tmp_path)
    by_name = {r["name"]: r["details"] for r in ctx["runs"]}
    # no decision recorded: the argmax
    assert by_name["dmms-image-max-s0"]["confusion"]["rows"] == confusion_matrix([0, 1, 0, 0], [0, 1, 1, 0]).tolist()
    assert by_name["dmms-image-sum-s0"]["confusion"] is None and by_name["dmms-image-sum-s0"]["provenance"] is None
    html = build_report(tmp_path / "manifest.parquet", [run, old], {}, tmp_path / "report.html").read_text()
    assert html.count('<details class="run"') == 2


def test_results_csv_has_a_row_per_configuration_and_run_and_defuses_formulas(tmp_path):
    make_manifest(tmp_path / "manifest.parquet", "binary")
    root = tmp_path / "runs"
    runs = [binary_run(root, f"dmms-image-max-s{s}", 0.5, seed=s) for s in (0, 1)]
    build_report(tmp_path / "manifest.parquet", runs, {}, tmp_path / "report.html", csv_path=tmp_path / "results.csv")
    table = pd.read_csv(tmp_path / "results.csv")
    assert list(table["kind"]) == ["configuration", "run", "run"]
    assert list(table["run"].fillna("")) == ["", "dmms-image-max-s0", "dmms-image-max-s1"]
    config = table.iloc[0]
    assert config["configuration"] == "dmms-image-max" and config["n_seeds"] == 2 and bool(config["best_by_dev"])
    assert config["test_accuracy"] == 0.7 and config["dev_accuracy"] == 0.75 and config["test_accuracy_std"] == 0.0
    assert list(table["seed"].iloc[1:]) == [0, 1]
    assert safe_text("=HYPERLINK(1)") == "'=HYPERLINK(1)" and safe_text(-0.5) == -0.5 and safe_text(None) == ""
    rows = list(csv.reader(io.StringIO((tmp_path / "results.csv").read_text())))
    assert all(len(r) == len(rows[0]) for r in rows)
