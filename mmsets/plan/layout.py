"""Where the workflow puts things: the paths of the results tree, written once (docs/formats.md).

    results/{dataset}/manifest.parquet
    results/{dataset}/features/{extractor}.h5      a ragged store (mmsets.store)
    results/{dataset}/features/erased/{store}/{k}.h5   a token store without its k-th modality, test items
    results/{dataset}/features/shards/{store}/{i}-of-{K}.h5   shard i of K of a sharded store
    results/{dataset}/runs/{run}/                  a run directory (mmsets.runs.record)
    results/{dataset}/report.html
"""

from __future__ import annotations

import os
from pathlib import Path

STORE_SUFFIX = ".h5"


def dataset_dir(dataset: str) -> str:
    return f"results/{dataset}"


def manifest_path(dataset: str) -> str:
    return f"{dataset_dir(dataset)}/manifest.parquet"


def features_dir(dataset: str) -> str:
    return f"{dataset_dir(dataset)}/features"


def store_path(features: str | os.PathLike, name: str) -> str:
    """The store of extractor ``name`` in a features folder."""
    return str(Path(features) / f"{name}{STORE_SUFFIX}")


def feature_path(dataset: str, extractor: str) -> str:
    return f"{features_dir(dataset)}/{extractor}{STORE_SUFFIX}"


def erased_store_path(dataset: str, store: str, k: int) -> str:
    """Token store ``store`` re-encoded without its k-th modality, test items only (DM2S2 Fig. 2)."""
    return f"{features_dir(dataset)}/erased/{store}/{k}{STORE_SUFFIX}"


def shard_path(features: str | os.PathLike, name: str, index: int, count: int) -> str:
    """Shard ``index`` of ``count`` of store ``name`` (mmsets.extract.shards), before they are gathered."""
    return str(Path(features) / "shards" / name / f"{index}-of-{count}{STORE_SUFFIX}")


def runs_dir(dataset: str) -> str:
    return f"{dataset_dir(dataset)}/runs"


def run_dir(dataset: str, run: str) -> str:
    return f"{runs_dir(dataset)}/{run}"


def store_name(path: str | os.PathLike) -> str:
    """The extractor a store path belongs to (its file stem)."""
    return Path(path).name.removesuffix(STORE_SUFFIX)
