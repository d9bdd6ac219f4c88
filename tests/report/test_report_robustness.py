"""The report's table of robustness to missing modalities (mmsets.report.robustness): each family's best
configuration by dev, without each modality and by coverage, read from robustness.json and erasure.json."""

import pandas as pd
import pytest

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.io import write_json
from mmsets.plan.families import FAMILIES
from mmsets.report import build_report, report_context
from mmsets.report.robustness import NOT_ERASED, REMOVAL

LABELS = ["Drama", "Comedy"]
EVIL = "<img src=x onerror=alert(1)>"  # a modality name is a store name from the config: escaped like any text


def _manifest(tmp_path):
    rows = [{"id": f"i{i}", "split": "test" if i % 2 else "train", "image": None, "labels": ["Drama"]}
            for i in range(8)]
    write_manifest(Manifest(pd.DataFrame(rows), LABELS, "multilabel", "demo"), tmp_path / "manifest.parquet")
    return tmp_path / "manifest.parquet"


def _run(root, name, model, features, pooling, dev, full, removed=None, erasure=None, seed=0):
    """A finished run directory with robustness.json: ``removed`` {modality: test F1-micro without it}."""
    run = root / name
    run.mkdir(parents=True)
    group, combination = name.split("-")[:2]
    write_json(run / "metrics.json", {
        "run": name, "task": "multilabel", "model": model, "features": features, "pooling": pooling, "seed": seed,
        "group": group, "combination": combination, "dev": {"f1_micro": dev},
        "test": {"f1_micro": full, "f1_macro": full - 0.1, "f1_samples": full}})
    (run / "model.pt").write_bytes(b"")
    pd.DataFrame({"id": ["i1"], "split": "test", "Drama": [0.9], "Comedy": [0.1],
                  "labels": [["Drama"]]}).to_parquet(run / "predictions.parquet")
    modalities = list(removed) if removed else ["text:plot", "labels"]
    write_json(run / "robustness.json", {
        "run": name, "model": model, "n_items": 4, "folds": 1, "modalities": modalities,
        "full": {"f1_micro": full, "f1_macro": full - 0.1},
        "removal": "dropped" if removed else "erasure",
        "removed": {m: {"test": {"f1_micro": v}, "delta": {"f1_micro": v - full}} for m, v in (removed or {}).items()},
        "coverage": {m: {"with": {"n_items": 3, "test": {"f1_micro": full + 0.05}},
                         "without": {"n_items": 1, "test": {"f1_micro": full - 0.2}}} for m in modalities}})
    if erasure:
        write_json(run / "erasure.json", {"run": name, "modalities": modalities, "full": {"f1_micro": full},
                                          "erased": {m: {"test": {"f1_micro": v}, "delta": {"f1_micro": v - full}}
                                                     for m, v in erasure.items()}})
    return run


def test_the_report_shows_each_familys_best_without_each_modality_and_by_coverage(tmp_path):
    manifest, root = _manifest(tmp_path), tmp_path / "runs"
    runs = [_run(root, "g-pair-s0", "dmms", ["image", EVIL], "max", 0.6, 0.5, {"image": 0.3, EVIL: 0.45}),
            _run(root, "g-pair-s1", "dmms", ["image", EVIL], "max", 0.62, 0.54, {"image": 0.4, EVIL: 0.5}, seed=1),
            _run(root, "g-image-s0", "dmms", ["image"], "max", 0.4, 0.9, {"image": 0.1}),  # best on test only
            _run(root, "b-pair-s0", "logreg", ["image", EVIL], None, 0.55, 0.52, {"image": 0.2, EVIL: 0.5}),
            _run(root, "s-tokens-s0", "dm2s2", ["tokens"], None, 0.5, 0.48, erasure={"text:plot": 0.3}),
            _run(root, "e-tokens-s0", "encoder_only", ["tokens"], None, 0.45, 0.47)]
    ctx = report_context(manifest, runs, {})
    table = ctx["robustness"]
    assert [(r["family"], r["config"]) for r in table["rows"]] == [
        ("DMMS", "g-pair-max"), ("logistic regression", "b-pair"), ("DM2S2", "s-tokens"),
        ("encoder only", "e-tokens")]

    dmms = table["rows"][0]
    assert dmms["n"] == 2 and dmms["missing"] == FAMILIES["dmms"].missing
    assert dmms["full"]["mean"] == pytest.approx(0.52) and dmms["full"]["std"] is not None
    image, evil = dmms["modalities"]
    assert image["modality"] == "image" and image["removal"] == REMOVAL["dropped"]
    assert image["removed"]["mean"] == pytest.approx(0.35) and image["delta"]["mean"] == pytest.approx(-0.17)
    assert image["with_it"]["n_items"] == 3 and image["with_it"]["test"]["mean"] == pytest.approx(0.57)
    assert image["without_it"]["n_items"] == 1 and image["without_it"]["test"]["mean"] == pytest.approx(0.32)
    assert evil["modality"] == EVIL
    assert "presence flag" not in dmms["missing"] and "element count" in table["rows"][1]["missing"]

    plot, labels = table["rows"][2]["modalities"]  # DM2S2: removal by re-encoding, from erasure.json
    assert plot["removal"] == REMOVAL["erasure"] and plot["removed"]["mean"] == pytest.approx(0.3)
    assert labels["removed"]["mean"] is None and labels["without_it"]["n_items"] == 1
    encoder = table["rows"][3]["modalities"][0]  # a group without erasure: true has its coverage only
    assert encoder["removal"] == NOT_ERASED and encoder["removed"]["mean"] is None
    assert encoder["with_it"]["test"]["mean"] == pytest.approx(0.52)

    html = build_report(manifest, runs, {}, tmp_path / "report.html").read_text()
    assert 'id="robustness"' in html and 'href="#robustness"' in html
    assert EVIL not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "−17.00 ± " in html  # the DMMS seeds' change without the image, in points


def test_an_unreadable_robustness_json_is_a_problem_of_its_run_and_no_row(tmp_path):
    manifest, root = _manifest(tmp_path), tmp_path / "runs"
    run = _run(root, "g-pair-s0", "dmms", ["image"], "max", 0.6, 0.5, {"image": 0.3})
    (run / "robustness.json").write_text("{not json")
    ctx = report_context(manifest, [run], {})
    assert ctx["robustness"] is None
    assert any("robustness.json unreadable" in p for p in ctx["runs"][0]["problems"])
