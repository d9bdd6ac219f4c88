"""Values that used to pass validation and fail inside a job, and failures that gave tracebacks: each is refused up
front in one line naming its key or file."""

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mmsets.cli import main
from mmsets.data.demo import generate_demo
from mmsets.data.table_demo import generate_table_demo
from mmsets.models.dmms import DMMSConfig
from mmsets.plan.config import ConfigError, validate_config
from mmsets.plan.errors import SpecError
from mmsets.plan.schema import MAX_VALUES, check_size
from mmsets.plan.spec import CVConfig, TrainConfig
from mmsets.runs.checkpoint import CheckpointError, load_models, read_checkpoint
from workdirs import workdir_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
NAN, INF = float("nan"), float("inf")


def _config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def _refused(config) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    return str(err.value)


# ------------------------------------------------------------------------------------ non-finite, non-integral

@pytest.mark.parametrize("path, value, message", [
    (("training", "lr"), NAN, "training.lr: nan is not a finite number"),
    (("training", "weight_decay"), INF, "training.weight_decay: inf is not a finite number"),
    (("training", "auc_threshold"), -INF, "training.auc_threshold: -inf is not a finite number"),
    (("models", "dmms", "dropout"), NAN, "models.dmms.dropout: nan is not a finite number"),
    (("models", "logreg", "C"), [0.1, INF], "models.logreg.C: [0.1, inf] is not valid under any of the given"),
    (("datasets", "demo", "n_items"), 40.0, "datasets.demo.n_items: 40.0 is not of type 'integer' (write 40)"),
    (("training", "epochs"), 3.0, "training.epochs: 3.0 is not of type 'integer' (write 3)"),
    (("datasets", "demo", "missing_image"), NAN, "datasets.demo.missing_image: nan is not a finite number"),
])
def test_a_non_finite_or_non_integral_number_is_refused_naming_its_key(path, value, message):
    config = _config()
    node = config
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    refused = _refused(config)
    assert f"  {message}" in refused


def test_yaml_spellings_of_nan_and_inf_are_refused():
    config = _config()
    config.update(yaml.safe_load("training: {lr: .nan, weight_decay: .inf}\nmodels: {dmms: {dropout: .NaN}}"))
    refused = _refused(config)
    assert "training.lr: nan is not a finite number" in refused and "models.dmms.dropout: nan" in refused
    assert "training.weight_decay: inf is not a finite number" in refused


def test_a_command_line_nan_is_refused_too():
    config = _config()
    config["training"] = {"lr": ".nan"}
    assert "training.lr: nan is not a finite number" in _refused(config)


def test_a_datasets_non_finite_override_is_refused_naming_the_dataset():
    config = _config()
    config["datasets"]["demo"]["training"] = {"lr": NAN}
    assert "datasets.demo.training.lr: nan is not a finite number" in _refused(config)


def test_a_tuning_bound_must_be_finite():
    config = _config()
    config["experiments"]["dmms"]["tune"] = {"space": {"lr": {"low": 1e-4, "high": INF}}}
    assert "experiments.dmms.tune.space.lr: {'high': inf, 'low': 0.0001} is not valid" in _refused(config)


@pytest.mark.parametrize("fields, message", [
    ({"lr": NAN}, "training.lr: nan is not a finite number"),
    ({"weight_decay": INF}, "training.weight_decay: inf is not a finite number"),
    ({"epochs": 3.0}, "training.epochs: 3.0 is not an integer (write 3)"),
    ({"patience": 2.5}, "training.patience: 2.5 is not an integer"),
    ({"auc_threshold": NAN}, "training.auc_threshold: nan is not a finite number"),
    ({"lr": 0}, "training.lr: 0 is not above 0"),
    ({"weight_decay": -0.1}, "training.weight_decay: -0.1 is below 0"),
    ({"batch_size": True}, "training.batch_size: True is not an integer"),
])
def test_the_training_dataclass_refuses_what_the_schema_refuses(fields, message):
    with pytest.raises(SpecError) as err:
        TrainConfig(**fields)
    assert str(err.value).startswith(message)


def test_the_cv_dataclass_refuses_an_integral_float():
    with pytest.raises(SpecError, match=r"cv.folds: 5.0 is not an integer \(write 5\)"):
        CVConfig(folds=5.0)


@pytest.mark.parametrize("fields, message", [
    ({"dropout": NAN}, "DMMSConfig.dropout: nan is not a finite number"),
    ({"head_dropout": 1.5}, "DMMSConfig.head_dropout must lie in [0, 1]"),
    ({"d_model": 8.0}, "DMMSConfig.d_model: 8.0 is not an integer (write 8)"),
])
def test_a_family_dataclass_refuses_what_the_schema_refuses(fields, message):
    with pytest.raises(ValueError) as err:
        DMMSConfig(input_dims={"image": 4}, n_classes=2, **fields)
    assert str(err.value).startswith(message)


def test_the_demo_generators_name_a_float_count_in_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"^demo n_items: 40.0 is not an integer \(write 40\)$"):
        generate_demo(tmp_path, n_items=40.0)
    with pytest.raises(ValueError, match=r"^table_demo missing_image: nan is not a finite number$"):
        generate_table_demo(tmp_path, missing_image=NAN)


# ----------------------------------------------------------------------------- per-dataset command-line strings

def test_a_datasets_override_on_the_snakemake_command_line_plans(tmp_path):
    workdir_config(tmp_path).write_text((ROOT / "config.yaml").read_text())
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
                           str(tmp_path), "--cores", "1", "-n", "results/demo/manifest.parquet", "--config",
                           "datasets={demo: {kind: demo, training: {epochs: 3}, n_items: 40}}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is not of type" not in proc.stdout + proc.stderr


# -------------------------------------------------------------------------------------------------- alias bomb

def alias_bomb(levels: int = 9, width: int = 9, mappings: bool = False) -> str:
    """``predict:`` holding ``levels`` of ``width`` aliases each: width ** levels values once expanded."""
    def node(item: str) -> str:
        if mappings:
            return "{" + ", ".join(f"k{i}: {item}" for i in range(width)) + "}"
        return "[" + ", ".join([item] * width) + "]"
    lines = ["predict:", f"  l0: &l0 {node('lol')}"]
    lines += [f"  l{k}: &l{k} {node(f'*l{k - 1}')}" for k in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("mappings", [False, True])
def test_an_alias_bomb_fails_fast_with_a_message(mappings):
    config = _config()
    config.update(yaml.safe_load(alias_bomb(mappings=mappings)))  # 387 million values, loaded as shared references
    started = time.perf_counter()
    refused = _refused(config)
    assert time.perf_counter() - started < 2
    assert f"predict: the configuration holds more than {MAX_VALUES} values" in refused and "alias" in refused
    assert len(refused) < 300


def test_a_reference_cycle_fails_fast_too():
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(ConfigError, match="predict: the configuration holds more than"):
        check_size({"predict": cycle})


def test_the_shipped_config_is_far_below_the_bound():
    check_size(_config(), MAX_VALUES // 20)


def test_an_alias_bomb_configfile_fails_the_dry_run_fast(tmp_path):
    workdir_config(tmp_path).write_text((ROOT / "config.yaml").read_text())
    (tmp_path / "bomb.yaml").write_text(alias_bomb())
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
                           str(tmp_path), "--cores", "1", "-n", "--configfile", str(tmp_path / "bomb.yaml")],
                          capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "the configuration holds more than" in output
    assert "MemoryError" not in output and time.perf_counter() - started < 60


def test_a_wrong_value_is_quoted_briefly():
    config = _config()
    config["predict"] = {"items": [["x" * 1000] * 100] * 100}
    refused = _refused(config)
    assert "predict.items: [[" in refused and "is not of type 'string'" in refused and len(refused) < 600


# ---------------------------------------------------------------------------------------------- unsafe model.pt

class Payload:
    """Pickles as a call of os.system: loading it unchecked would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture()
def unsafe_run(tmp_path):
    marker = tmp_path / "code-ran"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"config": {"model": "dmms"}, "state_dict": {}, "extra": Payload(marker)}, run_dir / "model.pt")
    with open(run_dir / "model.pt", "rb") as f:
        assert b"system" in f.read()  # the payload is in the file
    return run_dir, marker


def test_an_unsafe_model_pt_is_refused_in_one_line_naming_the_file(unsafe_run):
    run_dir, marker = unsafe_run
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(run_dir / "model.pt")
    message = str(err.value)
    assert message.startswith(f"{run_dir / 'model.pt'}: refused") and "\n" not in message
    assert "GLOBAL posix.system" in message or "system" in message
    with pytest.raises(CheckpointError):
        load_models(run_dir / "model.pt")
    assert not marker.exists()


def test_predict_with_an_unsafe_model_pt_says_so_in_one_line(unsafe_run, tmp_path, capsys):
    run_dir, marker = unsafe_run
    code = main(["predict", "--run-dir", str(run_dir), "--items", str(tmp_path / "items.csv"),
                 "--out", str(tmp_path / "p.parquet")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"mmsets predict: error: {run_dir / 'model.pt'}: refused")
    assert not marker.exists()


def test_a_broken_model_pt_is_named(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "junk.pt").write_bytes(pickle.dumps([1, 2]) * 3)
    with pytest.raises(CheckpointError, match=r"empty.pt: not a readable model.pt \(EOFError"):
        read_checkpoint(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match=r"junk.pt: "):
        read_checkpoint(tmp_path / "junk.pt")


def test_running_out_of_memory_is_one_line(monkeypatch, capsys, tmp_path):
    import mmsets.cli as cli

    def exhausted(args):
        raise MemoryError()
    monkeypatch.setattr(cli, "cmd_prepare", exhausted)
    assert main(["prepare", "demo", "--images", str(tmp_path), "--out", str(tmp_path / "m.parquet")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmsets prepare: error: out of memory (MemoryError)") and len(err.splitlines()) == 1
