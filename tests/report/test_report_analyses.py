"""The papers' analyses in the report: the per-item feature-importance matrix (DMMS Fig. 2-3), IntraMRA over
tokens (DM2S2 Fig. 3), OCR backends side by side (DM2S2 Tables 1-2) and the papers' protocol at 0.5."""

import re

import numpy as np
import pandas as pd

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.io import write_json
from mmsets.report import build_report, report_context
from mmsets.store import RaggedWriter

LABELS = ["Drama", "Comedy"]
EVIL_TOKEN = "<script>alert(1)</script>"
TEST_IDS = ["t0", "t1", "t2"]


def _manifest(tmp_path):
    rows = [{"id": f"r{i}", "split": "train", "image": None, "labels": ["Drama"]} for i in range(3)]
    rows += [{"id": i, "split": "test", "image": None, "labels": labels}
             for i, labels in zip(TEST_IDS, (["Drama"], ["Comedy"], ["Drama", "Comedy"]))]
    write_manifest(Manifest(pd.DataFrame(rows), LABELS, "multilabel", "demo"), tmp_path / "manifest.parquet")
    return tmp_path / "manifest.parquet"


def _stores(tmp_path):
    paths = {}
    for name, backend in (("ocr", "tesseract"), ("ocr@easyocr", "easyocr")):
        paths[name] = str(tmp_path / f"{name}.h5")
        with RaggedWriter(paths[name], extractor="ocr", dim=1, params={"backend": backend},
                          fields={"text": ((), "str")}) as w:
            for item in ["r0", "r1", "r2", *TEST_IDS]:
                w.add(item, np.zeros((1, 1)), text=["word"])
    for name, ocr in (("tokens", "ocr"), ("tokens@easyocr", "ocr@easyocr")):
        paths[name] = str(tmp_path / f"{name}.h5")
        params = {"modalities": ["text:plot", "ocr"], "stores": {"ocr": paths[ocr]}}
        with RaggedWriter(paths[name], extractor="tokens", dim=2, params=params,
                          fields={"modality": ((), "int8"), "token": ((), "str")},
                          attrs={"modalities": ["text:plot", "ocr"]}) as w:
            for item in ["r0", "r1", "r2", *TEST_IDS]:
                w.add(item, np.zeros((6, 2)), modality=[-1, 0, 0, -1, 1, -1],
                      token=["[CLS]", "\u0120space", EVIL_TOKEN, "[SEP]", "##ocr", "[SEP]"])
    return paths


def _run(root, name, features, variant, f1, model="dm2s2"):
    run = root / name
    run.mkdir(parents=True)
    write_json(run / "metrics.json", {
        "run": name, "task": "multilabel", "model": model, "features": features, "seed": 0, "group": "g",
        "combination": features[0].replace("@", "_"), "variant": variant, "threshold": 0.5,
        "model_config": {"intra": True, "inter": True} if model == "dm2s2" else {},
        "dev": {"f1_micro": f1}, "test": {"f1_micro": f1, "f1_macro": f1 - 0.1, "f1_samples": f1,
                                           "f1_micro_at_0.5": f1 - 0.05, "f1_macro_at_0.5": f1 - 0.15}})
    (run / "model.pt").write_bytes(b"")
    pd.DataFrame({"id": TEST_IDS, "split": "test", "Drama": [0.9, 0.2, 0.6], "Comedy": [0.1, 0.7, 0.4],
                  "labels": [["Drama"], ["Comedy"], ["Drama", "Comedy"]]}).to_parquet(run / "predictions.parquet")
    fi = {"modalities": ["text:plot", "ocr"], "pooling": "mean", "kind": "inter_attention",
          "mean_share": {"text:plot": 0.7, "ocr": 0.3},
          "per_item": {"ids": TEST_IDS, "shares": [[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]]}}
    if model == "dm2s2":
        fi["intra_attention"] = {"t0": [0, 0.25, 0.75, 0, 1.0, 0], "t1": [0, 0.5, 0.5, 0, 1.0, 0]}
        write_json(run / "erasure.json", {"run": name, "modalities": ["text:plot", "ocr"], "erased": {
            "text:plot": {"delta": {"f1_micro": -0.2, "f1_macro": -0.25}},
            "ocr": {"delta": {"f1_micro": -0.01, "f1_macro": 0.02}}}})
    write_json(run / "feature_importance.json", fi)
    return run


def test_report_has_the_papers_analyses(tmp_path):
    manifest, stores = _manifest(tmp_path), _stores(tmp_path)
    runs = [_run(tmp_path / "runs", "g-tokens-both-s0", ["tokens"], "both", 0.7),
            _run(tmp_path / "runs", "g-tokens_easyocr-both-s0", ["tokens@easyocr"], "both", 0.65),
            _run(tmp_path / "runs", "g-tokens-encoder_only-s0", ["tokens"], "encoder_only", 0.6, "encoder_only")]
    ctx = report_context(manifest, runs, stores)
    html = build_report(manifest, runs, stores, tmp_path / "report.html").read_text()

    # the papers' protocol beside the tuned decision
    assert [m.key for m in ctx["metrics"]][-2:] == ["f1_micro_at_0.5", "f1_macro_at_0.5"]
    assert "F1-micro at 0.5" in html and "the papers' protocol" in html

    # per-item matrix of the best run: shares, true and predicted labels (threshold 0.5)
    matrix = ctx["fi_matrix"]
    assert matrix["run"] == "g-tokens-both-s0" and matrix["modalities"] == ["text:plot", "ocr"]
    assert [i["predicted"] for i in matrix["items"]] == [["Drama"], ["Comedy"], ["Drama"]]
    assert matrix["items"][2]["true"] == ["Drama", "Comedy"] and matrix["items"][2]["shares"] == [0.2, 0.8]

    # IntraMRA over the tokens, span by span, the token text escaped
    maps = ctx["intra_maps"]
    assert maps["run"] == "g-tokens-both-s0" and [i["id"] for i in maps["items"]] == ["t0", "t1"]
    plot, ocr = maps["items"][0]["spans"]
    assert plot["modality"] == "text:plot" and [t[0] for t in plot["tokens"]] == ["space", EVIL_TOKEN]
    assert [t[2] for t in plot["tokens"]] == [round(0.25 / 0.75, 3), 1.0] and ocr["tokens"] == [("ocr", 1.0, 1.0)]
    assert EVIL_TOKEN not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    # modality erasure (DM2S2 Fig. 2): the change without each modality
    erasure = {row["config"]: row for row in ctx["erasure"]["rows"]}
    assert ctx["erasure"]["metrics"] == ["f1_micro", "f1_macro"]
    plot_row = erasure["g-tokens-both"]["modalities"][0]
    assert plot_row["modality"] == "text:plot" and plot_row["deltas"][0]["mean"] == -0.2
    assert "g-tokens-encoder_only" not in erasure and 'id="erasure"' in html

    # OCR backends side by side, by the backend behind each token store
    ocr_rows = {(r["label"], r["ocr"]) for r in ctx["ocr"]}
    assert {r["ocr"] for r in ctx["ocr"]} == {"tesseract", "easyocr"}
    assert len(ocr_rows) == 3 and 'id="ocr"' in html
    assert re.search(r"<td>easyocr</td>\s*<td>g-tokens_easyocr-both</td>", html)


def test_token_pieces_spell_their_words():
    from mmsets.report.importance import token_words

    wordpiece = ["captain", "wy", "##nne", "##gate", "leaves", "england", ","]  # MiniLM, BERT
    assert "".join(token_words(wordpiece)) == "captain wynnegate leaves england ,"
    bpe = ["Capt", "ain", "\u0120Wy", "nn", "egate", "\u0120leaves"]  # RoBERTa
    assert "".join(token_words(bpe)) == "Captain Wynnegate leaves"
    assert "".join(token_words(["\u2581a", "\u2581rab", "bi"])) == "a rabbi" and token_words([]) == []


def test_token_stores_without_pieces_say_so(tmp_path):
    manifest = _manifest(tmp_path)
    path = tmp_path / "tokens.h5"
    with RaggedWriter(path, extractor="tokens", dim=2, fields={"modality": ((), "int8")},
                      attrs={"modalities": ["text:plot", "ocr"]}) as w:
        for item in ["r0", "r1", "r2", *TEST_IDS]:
            w.add(item, np.zeros((6, 2)), modality=[-1, 0, 0, -1, 1, -1])
    run = _run(tmp_path / "runs", "g-tokens-both-s0", ["tokens"], "both", 0.7)
    ctx = report_context(manifest, [run], {"tokens": str(path)})
    assert "no token pieces" in ctx["intra_maps"]["problem"] and ctx["ocr"] is None


def test_runs_without_modality_importance_say_why():
    from mmsets.report.importance import missing_note

    def run(**kw):
        return {"status": "ok", "model": "dm2s2", "pooling": None, "model_config": {}, **kw}

    assert missing_note([run(model_config={"intra": True, "inter": False})]) == \
        "n/a (IntraMRA only: no attention across modalities)"
    assert missing_note([run(model="dmms", pooling="sum")]) == "n/a (sum pooling)"
