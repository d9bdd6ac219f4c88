"""Experiment tracking: a finished run directory logged to an MLflow tracking store.

The run directory stays the record (the report reads it); MLflow gets a copy to compare runs in its UI: the
run's settings as params, each epoch of its history as a step of its metrics, the final dev and test metrics,
its provenance as tags and the directory's files as artifacts. One MLflow run per run directory: logging the
same run again (a re-run job) replaces the earlier one. The workflow logs each train and ensemble job when the
config sets ``tracking.mlflow`` (it reaches the jobs as ``MMSETS_MLFLOW_*``, like the runtime settings, so
changing it re-runs nothing); ``mmsets track`` logs run directories made before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from mmsets.plan.errors import MLFLOW_INSTALL_HINT
from mmsets.runs.record import RunRecord, number

log = logging.getLogger(__name__)

RUN_TAG = "mmsets.run"  # <dataset>/<run>: which run directory an MLflow run holds
MAX_PARAM_CHARS = 500


class TrackingError(RuntimeError):
    """Tracking is asked for but cannot be done (mlflow missing, an unusable store)."""


@dataclass(frozen=True)
class MlflowTarget:
    """Where runs are logged: a tracking URI (``sqlite:///path.db``, a folder, ``http://...``) and the
    experiment (None: the run's dataset)."""

    uri: str
    experiment: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "MlflowTarget | None":
        uri = environ.get("MMSETS_MLFLOW_URI", "")
        return cls(uri, environ.get("MMSETS_MLFLOW_EXPERIMENT") or None) if uri else None

    @property
    def database(self) -> Path | None:
        """The SQLite file of a ``sqlite:///`` store."""
        return Path(self.uri[len("sqlite:///"):]) if self.uri.startswith("sqlite:///") else None

    def artifact_location(self, experiment: str) -> str | None:
        """Where a new experiment keeps its artifacts: beside a SQLite store (``mlartifacts/<experiment>``), not in
        the job's working directory; other stores choose their own."""
        if self.database is None:
            return None
        return (self.database.absolute().parent / "mlartifacts" / experiment).as_uri()


def shown_uri(uri: str) -> str:
    """``uri`` without a user or password (``https://user:token@host`` -> ``https://***@host``): fit for a log."""
    return re.sub(r"(?<=://)[^/@]+@", "***@", uri)


def require_mlflow() -> Any:
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError as err:
        raise TrackingError(f"tracking is set but mlflow cannot be imported ({err}): {MLFLOW_INSTALL_HINT}") from None
    return MlflowClient


def _flat(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flat(f"{prefix}.{key}" if prefix else str(key), inner)
    else:
        yield prefix, value


def run_params(record: RunRecord) -> dict[str, str]:
    """The run's settings as MLflow params (dotted keys, short text values)."""
    who = {"model": record.model, "features": "+".join(record.features), "pooling": record.pooling,
           "seed": record.seed, "group": record.group, "combination": record.combination,
           "variant": record.variant, "selection": record.selection}
    raw = {**who, "model_config": record.model_config, "training": record.training,
           "stores": {name: made.get("params") for name, made in (record.stores or {}).items()
                      if isinstance(made, dict)}}
    out = {}
    for key, value in _flat("", raw):
        if value is None or value == {}:
            continue
        text = str(value)
        out[key] = text if len(text) <= MAX_PARAM_CHARS else text[:MAX_PARAM_CHARS - 1] + "…"
    return out


def run_metrics(record: RunRecord) -> list[tuple[str, float, int]]:
    """(key, value, step): every numeric entry of each epoch under its history name (``train_loss``,
    ``dev_f1_micro``; step = epoch) and the run's scores under the chosen decision as ``dev.<metric>``,
    ``test.<metric>`` (step 0): the epoch curves and the result never share a name."""
    out = []
    for step, epoch in enumerate(record.history, start=1):
        out += [(key, value, step) for key, value in ((k, number(v)) for k, v in epoch.items())
                if value is not None and key != "epoch"]
    for split, scores in (("dev", record.dev), ("test", record.test), ("test_pooled", record.test_pooled or {})):
        for key, value in _flat("", scores):
            if number(value) is not None:
                out.append((f"{split}.{key}".replace(" ", "_"), number(value), 0))
    if number(record.train_seconds) is not None:
        out.append(("train_seconds", number(record.train_seconds), 0))
    return out


def run_tags(record: RunRecord, run_dir: Path) -> dict[str, str]:
    prov = record.provenance or {}
    tags = {RUN_TAG: f"{record.dataset or ''}/{record.run}", "mmsets.run_dir": str(run_dir.resolve()),
            "mmsets.configuration": record.configuration, "mmsets.task": record.task or ""}
    if prov.get("git_commit"):
        tags["mlflow.source.git.commit"] = str(prov["git_commit"])
    for key in ("mmsets", "python", "platform", "device", "gpu", "created", "git_dirty"):
        if prov.get(key) is not None:
            tags[f"mmsets.provenance.{key}"] = str(prov[key])
    return tags


def _experiment_id(client: Any, target: MlflowTarget, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=target.artifact_location(name))


@contextlib.contextmanager
def _store_lock(target: MlflowTarget) -> Iterator[None]:
    """Jobs running at once log to one SQLite file in turn (its first use creates the tables)."""
    if target.database is None:
        yield
        return
    from filelock import FileLock

    target.database.absolute().parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.database) + ".lock"):
        yield


def log_run(run_dir: str | os.PathLike, target: MlflowTarget, artifacts: bool = True) -> str:
    """Log one finished run directory; return the MLflow run id."""
    client_class = require_mlflow()
    run_dir = Path(run_dir)
    record = RunRecord.read(run_dir)
    with _store_lock(target):
        return _log(client_class(tracking_uri=target.uri), run_dir, record, target, artifacts)


def _log(client: Any, run_dir: Path, record: RunRecord, target: MlflowTarget, artifacts: bool) -> str:
    from mlflow.entities import Metric, Param

    experiment = _experiment_id(client, target, target.experiment or record.dataset or "mmsets")
    tags = run_tags(record, run_dir)
    earlier = client.search_runs([experiment], filter_string=f"tags.`{RUN_TAG}` = '{tags[RUN_TAG]}'")
    run = client.create_run(experiment, run_name=record.run, tags=tags)
    run_id = run.info.run_id
    params = [Param(k, v) for k, v in run_params(record).items()]
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, step) for k, v, step in run_metrics(record)]
    for start in range(0, max(len(params), len(metrics)), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, metrics=metrics[start:start + 100], params=params[start:start + 100])
    if artifacts:
        client.log_artifacts(run_id, str(run_dir))
    client.set_terminated(run_id, "FINISHED")
    for old in earlier:  # the same run directory logged before (a re-run job): keep only the newest
        client.delete_run(old.info.run_id)
    log.info("run %s logged to MLflow %s (experiment %s, run id %s)", record.run, shown_uri(target.uri),
             target.experiment or record.dataset, run_id)
    return run_id


def track_finished_run(run_dir: str | os.PathLike, target: MlflowTarget | None = None) -> str | None:
    """The train and ensemble jobs' hook: log ``run_dir`` when tracking is set (``MMSETS_MLFLOW_URI``). A
    store that fails is logged as an error and the job still succeeds: the run directory is complete, and
    ``mmsets track`` logs it later."""
    target = target or MlflowTarget.from_env()
    if target is None:
        return None
    try:
        return log_run(run_dir, target)
    except TrackingError:
        raise
    except Exception as err:  # a tracking server down must not lose a finished run
        log.error("run %s not logged to MLflow %s: %s: %s (log it later: mmsets track %s --mlflow-uri ...)",
                  Path(run_dir).name, shown_uri(target.uri), type(err).__name__, err, run_dir)
        return None
