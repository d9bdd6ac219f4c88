"""Where the workflow puts things: the paths of the results tree, written once (docs/formats.md).

    resources/{dataset}/mmimdb.tar.gz, resources/{dataset}/unpacked/   a downloaded dataset
    results/{dataset}/manifest.parquet
    results/{dataset}/images/ (or raw/)            generated items' images
    results/{dataset}/features/{extractor}.h5      a ragged store (mmsets.store)
    results/{dataset}/features/erased/{store}/{k}.h5   a token store without its k-th modality, test items
    results/{dataset}/features/shards/{store}/{i}-of-{K}.h5   shard i of K of a sharded store
    results/{dataset}/runs/{run}/                  a run directory (mmsets.runs.record): model.pt, metrics.json, ...
    results/{dataset}/predictions/{name}/{run}.parquet   new items scored by a run (and .csv, work/{run}/)
    results/{dataset}/report.html
    results/{dataset}/logs/{job}.log, results/{dataset}/benchmarks/{job}.tsv   every job's log and timing

Each function takes plain names; the workflow calls them with wildcards (``feature_path("{dataset}",
"{extractor}")``) to get its rules' patterns.
"""

from __future__ import annotations

import os
from pathlib import Path

STORE_SUFFIX = ".h5"

# The files of a run directory.
MODEL = "model.pt"
METRICS = "metrics.json"
PREDICTIONS = "predictions.parquet"
IMPORTANCE = "feature_importance.json"
ERASURE = "erasure.json"  # DM2S2 Fig. 2, runs of groups with erasure: true (mmsets.runs.erasure)
ROBUSTNESS = "robustness.json"  # test metrics without each modality and by coverage (mmsets.runs.robustness)
ENSEMBLE_MEMBERS = "ensemble.json"  # an ensemble's members, weights and decision (mmsets.runs.ensemble)


def dataset_dir(dataset: str) -> str:
    return f"results/{dataset}"


def resources_dir(dataset: str) -> str:
    """Downloads and what is unpacked from them."""
    return f"resources/{dataset}"


def download_path(dataset: str) -> str:
    return f"{resources_dir(dataset)}/mmimdb.tar.gz"


def unpacked_dir(dataset: str) -> str:
    return f"{resources_dir(dataset)}/unpacked"


def manifest_path(dataset: str) -> str:
    return f"{dataset_dir(dataset)}/manifest.parquet"


def images_dir(dataset: str) -> str:
    """The images a generator draws (the demo, the rehearsal)."""
    return f"{dataset_dir(dataset)}/images"


def raw_dir(dataset: str) -> str:
    """A generated table and its images (table_demo), as a user's own table would be."""
    return f"{dataset_dir(dataset)}/raw"


def features_dir(dataset: str) -> str:
    return f"{dataset_dir(dataset)}/features"


def store_path(features: str | os.PathLike, name: str) -> str:
    """The store of extractor ``name`` in a features folder."""
    return str(Path(features) / f"{name}{STORE_SUFFIX}")


def feature_path(dataset: str, extractor: str) -> str:
    return f"{features_dir(dataset)}/{extractor}{STORE_SUFFIX}"


def erased_store_path(dataset: str, store: str, k: int | str) -> str:
    """Token store ``store`` re-encoded without its k-th modality, test items only (DM2S2 Fig. 2)."""
    return f"{features_dir(dataset)}/erased/{store}/{k}{STORE_SUFFIX}"


def shard_path(features: str | os.PathLike, name: str, index: int | str, count: int | str) -> str:
    """Shard ``index`` of ``count`` of store ``name`` (mmsets.extract.shards), before they are gathered."""
    return str(Path(features) / "shards" / name / f"{index}-of-{count}{STORE_SUFFIX}")


def runs_dir(dataset: str) -> str:
    return f"{dataset_dir(dataset)}/runs"


def run_dir(dataset: str, run: str) -> str:
    return f"{runs_dir(dataset)}/{run}"


def run_file(dataset: str, run: str, name: str) -> str:
    """One file of a run directory: ``MODEL``, ``METRICS``, ``PREDICTIONS``, ``IMPORTANCE``, ``ERASURE`` or
    ``ROBUSTNESS``."""
    return f"{run_dir(dataset, run)}/{name}"


def predictions_dir(dataset: str, name: str) -> str:
    """New items ``name`` (config ``predict``) scored by the dataset's runs."""
    return f"{dataset_dir(dataset)}/predictions/{name}"


def predictions_path(dataset: str, name: str, run: str, suffix: str = ".parquet") -> str:
    return f"{predictions_dir(dataset, name)}/{run}{suffix}"


def predict_work_dir(dataset: str, name: str, run: str) -> str:
    """The new items' manifest and stores, kept so that a rerun resumes their extraction."""
    return f"{predictions_dir(dataset, name)}/work/{run}"


def tune_path(dataset: str, search: str, suffix: str = ".json") -> str:
    """A search's result (``.json``) and its Optuna study (``.db``, resumed by a rerun), mmsets.runs.tune."""
    return f"{dataset_dir(dataset)}/tune/{search}{suffix}"


def report_path(dataset: str) -> str:
    return f"{dataset_dir(dataset)}/report.html"


def results_table_path(dataset: str) -> str:
    """The report's results, one row per configuration and per run (mmsets.report.export)."""
    return f"{dataset_dir(dataset)}/results.csv"


def log_path(dataset: str, job: str) -> str:
    """The log of a job (``"extract/ocr"``, ``"train/<run>"``, ``"prepare"``)."""
    return f"{dataset_dir(dataset)}/logs/{job}.log"


def benchmark_path(dataset: str, job: str) -> str:
    """Snakemake's ``benchmark:`` file of a job: its wall time and peak memory."""
    return f"{dataset_dir(dataset)}/benchmarks/{job}.tsv"


def store_name(path: str | os.PathLike) -> str:
    """The extractor a store path belongs to (its file stem)."""
    return Path(path).name.removesuffix(STORE_SUFFIX)
