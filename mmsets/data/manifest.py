"""The manifest: one row per item, the single form every dataset loader produces.

Its columns, its metadata and what each task puts in them: docs/formats.md, "Manifest".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mmsets.io import atomic_path

TEXT_PREFIX = "text_"
CAT_PREFIX = "cat_"
FINE_LABEL = "fine_label"  # optional: a finer class per item, reported on but not trained on (tables)
SPLITS = ("train", "dev", "test")
TASKS = ("multilabel", "binary", "multiclass", "regression")
_META_KEY = b"mmsets"
IMAGE_BASE = "manifest"  # the metadata's image_base: relative image paths start from the manifest's folder


class ManifestError(ValueError):
    pass


def is_missing(value: Any) -> bool:
    """Whether a cell holds no value: None, NaN / pd.NA / NaT (pandas' missing values) or a blank string.
    A list or array is a value, even an empty one."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return pd.api.types.is_scalar(value) and bool(pd.isna(value))


@dataclass
class Manifest:
    frame: pd.DataFrame
    label_names: list[str]
    task: str = "multilabel"
    dataset: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = {"id", "split", "image", "labels"} - set(self.frame.columns)
        if missing:
            raise ManifestError(f"manifest lacks columns {sorted(missing)}")
        if self.task not in TASKS:
            raise ManifestError(f"task {self.task!r} is not one of {TASKS}")
        if self.task == "regression" and "target" not in self.frame.columns:
            raise ManifestError("a regression manifest needs a float 'target' column")
        dup = self.frame["id"][self.frame["id"].duplicated()]
        if len(dup):
            raise ManifestError(f"duplicate item ids, e.g. {dup.iloc[0]!r}")

    @property
    def text_fields(self) -> list[str]:
        return [c[len(TEXT_PREFIX):] for c in self.frame.columns if c.startswith(TEXT_PREFIX)]

    @property
    def categorical_fields(self) -> list[str]:
        return [c[len(CAT_PREFIX):] for c in self.frame.columns if c.startswith(CAT_PREFIX)]

    def text(self, field_name: str) -> pd.Series:
        return self.frame[TEXT_PREFIX + field_name]

    def split(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == name]

    def __len__(self) -> int:
        return len(self.frame)


def write_manifest(manifest: Manifest, path: str | os.PathLike) -> None:
    """``manifest`` as a parquet file (atomically); an image inside the manifest's folder is written relative to
    it, so that the folder (the results tree) can move (docs/formats.md, "Manifest")."""
    frame = manifest.frame.reset_index(drop=True)
    frame = frame.assign(image=pd.Series(stored_image_paths(frame["image"], Path(path).parent), index=frame.index,
                                         dtype=object))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {
        "label_names": manifest.label_names,
        "task": manifest.task,
        "dataset": manifest.dataset,
        "extra": manifest.extra,
        "image_base": IMAGE_BASE,
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(meta).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_manifest(path: str | os.PathLike) -> Manifest:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}: make it with `mmsets prepare` (or the workflow)")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise ManifestError(f"{path}: not a readable parquet manifest ({err})") from None
    raw = (table.schema.metadata or {}).get(_META_KEY)
    if raw is None:
        raise ManifestError(f"{path}: not an mmsets manifest (no metadata)")
    meta = json.loads(raw)
    frame = table.to_pandas()
    frame["labels"] = frame["labels"].map(lambda v: list(v) if v is not None else [])
    for column in ["image", *(c for c in frame.columns if c.startswith((TEXT_PREFIX, CAT_PREFIX)))]:
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    if meta.get("image_base") == IMAGE_BASE:  # else written before paths were relative: as they are
        frame["image"] = pd.Series(read_image_paths(frame["image"], path.parent), index=frame.index, dtype=object)
    return Manifest(frame, meta["label_names"], meta["task"], meta.get("dataset", ""), meta.get("extra", {}))


def stored_image_paths(images: Iterable[Any], folder: Path) -> list[str | None]:
    """Image paths as a manifest in ``folder`` stores them: relative to ``folder`` when inside it (they move
    with it), absolute otherwise (a relative one in memory is taken from the working folder, as extraction
    takes it)."""
    base = os.path.abspath(folder)
    stored: list[str | None] = []
    for image in images:
        if is_missing(image):
            stored.append(None)
            continue
        absolute = os.path.abspath(str(image))
        inside = os.path.commonpath([base, absolute]) == base
        stored.append(Path(os.path.relpath(absolute, base)).as_posix() if inside else absolute)
    return stored


def read_image_paths(images: Iterable[Any], folder: Path) -> list[str | None]:
    """Stored image paths as absolute ones: relative ones from ``folder``, where the manifest now lies."""
    base = Path(os.path.abspath(folder))
    return [None if is_missing(p) else str(p) if os.path.isabs(str(p)) else str(base / str(p)) for p in images]
