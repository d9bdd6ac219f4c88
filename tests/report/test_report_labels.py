"""The report's per-label table, seed ties, thumbnails and modality order."""

import base64

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

from mmsets.report import report_context
from mmsets.report.examples import thumbnail
from mmsets.report.importance import modality_order
from mmsets.report.tables import tied

from test_report import LABELS, make_manifest, make_run, make_stores


def test_per_label_scores_are_sklearns_with_each_runs_decision(tmp_path):
    ids = make_manifest(tmp_path / "manifest.parquet")
    stores = make_stores(tmp_path, ids)
    runs = [make_run(tmp_path / "runs", f"dmms-image_plot-max-s{s}", "max", s, 0.70) for s in (0, 1)]
    ctx = report_context(tmp_path / "manifest.parquet", runs, stores)
    table = ctx["per_label"]
    assert [row["label"] for row in table["labels"]] == LABELS

    preds = pd.read_parquet(tmp_path / "runs" / "dmms-image_plot-max-s0" / "predictions.parquet")
    preds = preds[preds["split"] == "test"]
    probs = preds[LABELS].to_numpy()
    truth = np.array([[label in labels for label in LABELS] for labels in preds["labels"]], int)
    decided = {0: (probs >= 0.5).astype(int)}  # seed 0: threshold 0.5; seed 1 adds the top-1 label
    decided[1] = decided[0].copy()
    decided[1][np.arange(len(probs)), probs.argmax(axis=1)] = 1
    scores = table["configs"][0]["scores"]
    for k, label in enumerate(LABELS):
        for name, fn in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
            expected = np.mean([fn(truth[:, k], decided[s][:, k], zero_division=0) for s in (0, 1)])
            assert abs(scores[label][name]["mean"] - expected) < 1e-12
        assert abs(scores[label]["ap"]["mean"] - average_precision_score(truth[:, k], probs[:, k])) < 1e-12
    assert [row["support"] for row in table["labels"]] == list(truth.sum(axis=0))
    assert ctx["figures"]["pr"].startswith("data:image/svg+xml;base64,")


def test_configurations_tied_with_the_best_are_told_by_welchs_test():
    assert tied([0.60, 0.62, 0.61], [0.59, 0.62, 0.60])
    assert not tied([0.60, 0.61, 0.605], [0.50, 0.51, 0.505])
    assert not tied([0.6], [0.6, 0.61])  # one seed cannot tell


def test_thumbnails_are_small_reencoded_jpegs(tmp_path):
    path = tmp_path / "poster.png"
    Image.new("RGBA", (600, 900), (200, 10, 10, 255)).save(path)
    uri = thumbnail(str(path))
    assert uri.startswith("data:image/jpeg;base64,")
    with Image.open(__import__("io").BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as small:
        assert small.format == "JPEG" and max(small.size) <= 112
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    assert thumbnail(str(tmp_path / "broken.jpg")) is None and thumbnail(None) is None


def test_modalities_have_one_order_everywhere():
    assert modality_order(["text", "faces", "image", "ocr_text", "bbox"]) == ["image", "text", "ocr_text", "bbox",
                                                                              "faces"]
    assert modality_order(["faces", "text:title", "ocr", "text:plot"]) == ["text:plot", "text:title", "ocr", "faces"]
