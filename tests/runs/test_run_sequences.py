"""DM2S2 and the encoder-only baseline through train_run, from a token store like the tokens extractor's."""

import numpy as np
import pandas as pd

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.runs.evaluate import evaluate_run
from mmsets.io import read_json
from mmsets.store import RaggedWriter
from mmsets.runs.run import train_run

H = 16


def _token_store(tmp_path):
    """Two modalities; the label is written into the first modality's token states."""
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    rows = []
    with RaggedWriter(tmp_path / "tokens.h5", extractor="tokens", dim=H, fields={"modality": ((), "int8")},
                      attrs={"modalities": ["text:plot", "ocr"]}) as w:
        for i in range(240):
            y = [labels[j] for j in range(3) if rng.random() < 0.4] or ["b"]
            n0, n1 = int(rng.integers(2, 6)), int(rng.integers(0, 4))
            modality = np.array([-1] + [0] * n0 + [-1] + [1] * n1 + [-1])
            states = rng.normal(size=(len(modality), H))
            states[modality == 0, :3] += 4.0 * np.array([label in y for label in labels])
            w.add(f"i{i}", states, modality=modality)
            rows.append({"id": f"i{i}", "split": ("train", "train", "dev", "test")[i % 4], "image": None, "labels": y})
    write_manifest(Manifest(pd.DataFrame(rows), labels), tmp_path / "manifest.parquet")


def test_dm2s2_and_encoder_only_train_evaluate_and_explain(tmp_path):
    _token_store(tmp_path)
    training = {"epochs": 15, "warmup_epochs": 1, "batch_size": 16, "lr": 3e-3}
    for model, extra in (("dm2s2", {"similarity": "additive"}), ("encoder_only", {})):
        out = tmp_path / model
        metrics = train_run(tmp_path / "manifest.parquet", {"tokens": tmp_path / "tokens.h5"}, out,
                            {"model": model, "features": ["tokens"], "head_hidden": [16], **extra,
                             "training": training})
        assert metrics["test"]["f1_micro"] > 0.6, (model, metrics["test"])
        again = evaluate_run(out, tmp_path / "manifest.parquet", tmp_path, device="cpu")
        assert abs(again["f1_micro"] - metrics["test"]["f1_micro"]) < 1e-9
    importance = read_json(tmp_path / "dm2s2" / "feature_importance.json")
    assert importance["kind"] == "inter_attention"
    assert importance["modalities"] == ["text:plot", "ocr"]
    assert abs(sum(importance["mean_share"].values()) - 1) < 1e-6
    assert importance["mean_share"]["text:plot"] > importance["mean_share"]["ocr"]
    assert read_json(tmp_path / "encoder_only" / "feature_importance.json")["mean_share"] is None
    # IntraMRA per token (DM2S2 Fig. 3) for the first test items, aligned with the store's tokens
    intra = importance["intra_attention"]
    assert 0 < len(intra) <= 8
    from mmsets.store import RaggedStore
    with RaggedStore(tmp_path / "tokens.h5") as store:
        for item_id, weights in intra.items():
            (modality,) = store.get([item_id], field="modality")
            assert len(weights) == len(modality)
            weights = np.asarray(weights)
            assert np.all(weights[modality < 0] == 0)
            for m in set(modality[modality >= 0].tolist()):  # each present modality's tokens sum to 1
                assert abs(weights[modality == m].sum() - 1) < 1e-3


def test_erasure_scores_the_run_without_each_modality(tmp_path):
    """DM2S2 Fig. 2: the label lives in the text:plot span, so re-encoding without it costs F1; without ocr little."""
    from mmsets.runs.erasure import erasure
    from mmsets.store import RaggedStore

    _token_store(tmp_path)
    out = tmp_path / "run"
    metrics = train_run(tmp_path / "manifest.parquet", {"tokens": tmp_path / "tokens.h5"}, out,
                        {"model": "dm2s2", "features": ["tokens"], "head_hidden": [16],
                         "training": {"epochs": 15, "warmup_epochs": 1, "batch_size": 16, "lr": 3e-3}})
    erased = {}
    with RaggedStore(tmp_path / "tokens.h5") as full:  # stand-ins for stores re-encoded without one modality
        for k, name in enumerate(["text:plot", "ocr"]):
            erased[name] = tmp_path / f"erased{k}.h5"
            keep = [m for m in ["text:plot", "ocr"] if m != name]
            with RaggedWriter(erased[name], extractor="tokens", dim=H, fields={"modality": ((), "int8")},
                              attrs={"modalities": keep}) as w:
                for item_id in full.ids:
                    (states,), (modality,) = full.get([item_id]), full.get([item_id], "modality")
                    left = modality != k
                    w.add(item_id, states[left], modality=np.where(modality[left] < 0, -1, 0))
    result = erasure(out, tmp_path / "manifest.parquet", tmp_path / "tokens.h5", erased, device="cpu")
    assert abs(result["full"]["f1_micro"] - metrics["test"]["f1_micro"]) < 1e-9
    assert result["erased"]["text:plot"]["delta"]["f1_micro"] < -0.1
    assert abs(result["erased"]["ocr"]["delta"]["f1_micro"]) < abs(result["erased"]["text:plot"]["delta"]["f1_micro"])
    assert read_json(out / "erasure.json")["modalities"] == ["text:plot", "ocr"]
