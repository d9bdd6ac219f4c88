"""MLflow tracking with the real client against a local SQLite store: what a run logs, read back."""

import logging
import sys

import pytest
from mlflow.tracking import MlflowClient

from mmsets.cli import main
from mmsets.io import read_json
from mmsets.runs import tracking
from mmsets.runs.tracking import MlflowTarget, TrackingError, log_run, shown_uri, track_finished_run


def logged_runs(uri, experiment="tiny"):
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([found.experiment_id]) if found else [])


def test_a_run_is_logged_with_its_settings_epochs_scores_provenance_and_files(tiny_run, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    run_id = log_run(tiny_run, MlflowTarget(uri))

    client, runs = logged_runs(uri)
    assert [r.info.run_id for r in runs] == [run_id]
    run = runs[0]
    raw = read_json(tiny_run / "metrics.json")
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert run.data.params["model"] == "dmms" and run.data.params["pooling"] == "max"
    assert float(run.data.params["training.lr"]) == raw["training"]["lr"]
    assert run.data.params["stores.f.width"] == "4"
    assert run.data.metrics["dev.f1_micro"] == pytest.approx(raw["dev"]["f1_micro"])
    assert run.data.metrics["test.f1_micro"] == pytest.approx(raw["test"]["f1_micro"])
    assert [m.step for m in client.get_metric_history(run_id, "dev_f1_micro")] == [1, 2]
    history = client.get_metric_history(run_id, "train_loss")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx([e["train_loss"] for e in raw["history"]])
    assert run.data.tags["mmsets.run"] == "tiny/run"
    assert run.data.tags["mmsets.provenance.mmsets"] == raw["provenance"]["mmsets"]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"metrics.json", "model.pt", "predictions.parquet"} <= artifacts
    # artifacts beside the SQLite store, not in the working directory
    assert (tmp_path / "mlflow" / "mlartifacts" / "tiny").is_dir()


def test_logging_a_run_again_replaces_it_and_the_cli_logs_run_directories(tiny_run, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = log_run(tiny_run, MlflowTarget(uri), artifacts=False)
    assert main(["track", str(tiny_run), "--mlflow-uri", uri, "--no-artifacts"]) == 0
    second = capsys.readouterr().out.strip().split("\t")[1]
    _, runs = logged_runs(uri)
    assert [r.info.run_id for r in runs] == [second] and second != first
    assert main(["track", str(tiny_run), "--mlflow-uri", uri, "--experiment", "mine", "--no-artifacts"]) == 0
    assert len(logged_runs(uri, "mine")[1]) == 1


def test_the_job_hook_logs_only_when_tracking_is_set_and_never_fails_a_finished_run(tiny_run, tmp_path, monkeypatch,
                                                                                     caplog):
    monkeypatch.delenv("MMSETS_MLFLOW_URI", raising=False)
    assert track_finished_run(tiny_run) is None
    uri = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("MMSETS_MLFLOW_URI", uri)
    monkeypatch.setenv("MMSETS_MLFLOW_EXPERIMENT", "from-env")
    assert track_finished_run(tiny_run) == logged_runs(uri, "from-env")[1][0].info.run_id

    def unreachable(run_dir, target, artifacts=True):
        raise ConnectionError("store down")

    monkeypatch.setattr(tracking, "log_run", unreachable)
    monkeypatch.setenv("MMSETS_MLFLOW_URI", "https://user:s3cret@mlflow.example")
    with caplog.at_level(logging.ERROR):
        assert track_finished_run(tiny_run) is None
    assert "not logged to MLflow https://***@mlflow.example: ConnectionError: store down" in caplog.text
    assert "s3cret" not in caplog.text and "mmsets track" in caplog.text


def test_without_mlflow_the_error_names_the_extra(tiny_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(TrackingError, match=r'pip install "mmsets\[mlflow\]"'):
        log_run(tiny_run, MlflowTarget("sqlite:///unused.db"))
    assert shown_uri("sqlite:///a/b.db") == "sqlite:///a/b.db"
