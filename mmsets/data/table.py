"""Tables of items (CSV or JSON Lines) as manifests.

One row per item: an id, an image path, text columns, categorical columns and a label (or a number
to regress). For example a table shaped like Ads-Parallelity (Zhang et al. 2018; DMMS Sec. 4.1) --
an ad's image and slogan, the image's naturalness and the text's concreteness ratings, and whether
image and slogan say the same thing -- as ``ads.csv``::

    id,image,slogan,naturalness,concreteness,parallel
    ad-001,images/ad-001.jpg,Soak up the summer sun,4,5,parallel
    ad-002,images/ad-002.jpg,Downtown never sleeps,5,2,non-parallel
    ad-003,,Ride the ocean waves,3,4,parallel

becomes a binary manifest (classes sorted: ``["non-parallel", "parallel"]``, the second positive) with::

    manifest = load_table("ads.csv", id_column="id", image_column="image", text_columns=["slogan"],
                          categorical_columns=["naturalness", "concreteness"], label_column="parallel",
                          task="binary")

The same rows as JSON Lines: ``{"id": "ad-001", "image": "images/ad-001.jpg", "slogan": "Soak up the
summer sun", "naturalness": 4, "concreteness": 5, "parallel": "parallel"}``. A multi-label column
holds "a|b" (``label_sep``) or, in JSON, a list; a regression column holds a number.

Relative image paths are resolved against ``image_root`` (default: the table's folder); an empty
image cell gives ``image=None`` and the item is kept (extractors give it no image elements). Without
a ``split_column`` items are split at random in ``split_fractions`` (train, dev, test) with ``split_seed``,
stratified by class (binary, multiclass) or by label (multilabel, iterative stratification: see
``mmsets.data.splits``); k-fold runs ignore the split. Every error names the table line and the column.
A generated table of this shape: ``mmsets.data.table_demo``.

Control characters (NUL and the rest of Unicode's Cc) are refused, naming the line and the column, in every
cell but a text column's: ids, labels and categorical values are stored as HDF5 strings, which cannot hold a NUL,
and a control character in them is a broken export, not a value. In a text column, tab, newline and carriage
return are kept and every other control character is removed; the manifest's ``extra["control_characters_removed"]``
counts the cells changed, by column.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from mmsets.data.manifest import CAT_PREFIX, FINE_LABEL, TASKS, TEXT_PREFIX, Manifest, is_missing, write_manifest
from mmsets.data.splits import item_splits
from mmsets.listing import listed

SPLIT_ALIASES = {"train": "train", "training": "train", "dev": "dev", "val": "dev", "valid": "dev",
                 "validation": "dev", "test": "test", "testing": "test"}


MAX_CELL = 64 << 20  # characters in one CSV cell (the csv module's own limit is 128 KiB)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode's Cc: C0, DEL and C1
TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # the same but tab, newline and return


class TableError(ValueError):
    """A bad table: the message names the file, the line and the column."""


def _rows(path: Path) -> tuple[list[str] | None, Iterator[tuple[int, dict[str, Any]]]]:
    """(header or None for JSONL, iterator of (line number, row dict))."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return None, _jsonl_rows(path)
    if suffix not in (".csv", ".txt"):
        raise TableError(f"{path}: unknown table format {suffix!r}; expected .csv or .jsonl")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise TableError(f"{path}:{line}: not UTF-8 (byte {raw[err.start]:#x}); save the table as UTF-8") from None
    handle = io.StringIO(text, newline="")
    csv.field_size_limit(MAX_CELL)
    reader = csv.DictReader(handle)
    header = list(reader.fieldnames or [])

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        with handle:
            for row in reader:
                if None in row:  # more cells than the header names: a stray delimiter or quote
                    raise TableError(f"{path}:{reader.line_num}: {len(header) + len(row[None])} cells but the "
                                     f"header names {len(header)} columns")
                yield reader.line_num, row

    return header, rows()


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise TableError(f"{path}:{line_no}: not UTF-8 (byte {raw[err.start]:#x})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise TableError(f"{path}:{line_no}: not valid JSON ({err.msg})") from err
            if not isinstance(row, dict):
                raise TableError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
            yield line_no, row


def read_rows(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV or JSON Lines table as it is, one row per item (cells as read; the table line in ``line``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no table at {path}")
    _, rows = _rows(path)
    records = [{**row, "line": line} for line, row in rows]
    if not records:
        raise TableError(f"{path}: no rows")
    return pd.DataFrame(records, dtype=object)


def _scalar(value: Any) -> str:
    """A cell as text: JSON booleans as true/false, integral floats without ".0"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def load_table(
    path: str | os.PathLike,
    *,
    id_column: str | None,
    image_column: str | None,
    text_columns: Sequence[str] = (),
    categorical_columns: Sequence[str] = (),
    label_column: str,
    task: str,
    split_column: str | None = None,
    fold_column: str | None = None,
    image_root: str | os.PathLike | None = None,
    label_sep: str | None = None,
    label_names: Sequence[str] | None = None,
    dataset: str | None = None,
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    split_seed: int = 0,
    split_stratify: bool = True,
    fine_label_column: str | None = None,
) -> Manifest:
    """Read a CSV (``.csv``, comma-separated, header row) or JSON Lines (``.jsonl``) table into a manifest.

    Args:
        id_column: unique item ids; None numbers the items by line (``row-<line>``).
        image_column: image paths (None: no images); relative ones against ``image_root`` or the table's folder.
        text_columns, categorical_columns: become ``text_<name>`` and ``cat_<name>`` (empty cells: None).
        label_column: the label (binary, multiclass), labels joined by ``label_sep`` (multilabel,
            default "|"), or the number to regress (regression, stored as ``target``).
        task: multilabel, binary, multiclass or regression.
        split_column: train/dev/test (also val, valid, validation); None: ``split_fractions`` drawn with
            ``split_seed``, stratified by the labels unless ``split_stratify`` is false (regression: random).
        fold_column: integer folds for k-fold runs (the manifest's ``fold`` column).
        label_names: the classes in order (binary: negative, positive); default: sorted as found.
        fine_label_column: a finer class of each item that is not trained on but reported on (the manifest's
            ``fine_label``): Ads-Parallelity's per-class accuracy is over non-parallel, parallel-equivalent
            and parallel-non-equivalent, while the model learns parallel or not.
    """
    path = Path(path)
    if task not in TASKS:
        raise TableError(f"task {task!r} is not one of {TASKS}")
    if not path.is_file():
        raise FileNotFoundError(f"no table at {path}")
    reader = _ItemReader(
        path=path, id_column=id_column, image_column=image_column, text_columns=tuple(text_columns),
        categorical_columns=tuple(categorical_columns), label_column=label_column, task=task,
        split_column=split_column, fold_column=fold_column, fine_label_column=fine_label_column,
        label_sep="|" if label_sep is None else label_sep,
        image_root=(Path(image_root) if image_root is not None else path.parent).absolute())  # paths kept absolute
    header, rows = _rows(path)
    if header is not None:
        reader.check_header(header)
    records = [reader.record(line, row) for line, row in rows]
    if not records:
        raise TableError(f"{path}: no rows")
    if header is None:
        reader.check_columns_seen()
    names = _label_names(records, task, label_names, path, label_column)
    frame = reader.frame(records, split_fractions, split_seed, split_stratify)
    extra = _extra(path, frame, label_column, fine_label_column)
    extra["control_characters_removed"] = dict(sorted(reader.controls_removed.items()))
    extra["columns"] = {"id": id_column, "image": image_column}  # new items to predict may name them so too
    return Manifest(frame, names, task, dataset or path.stem, extra)


@dataclass
class _ItemReader:
    """Turns a table's rows into manifest records, one row at a time, each error naming the line and column."""

    path: Path
    id_column: str | None
    image_column: str | None
    text_columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]
    label_column: str
    task: str
    split_column: str | None
    fold_column: str | None
    fine_label_column: str | None
    label_sep: str
    image_root: Path
    seen_ids: dict[str, int] = field(default_factory=dict)  # id -> the line that used it
    seen_columns: set[str] = field(default_factory=set)
    controls_removed: Counter[str] = field(default_factory=Counter)  # text column -> cells with some removed

    def named(self) -> list[str]:
        """Every column the settings name."""
        return [c for c in (self.id_column, self.image_column, *self.text_columns, *self.categorical_columns,
                            self.label_column, self.split_column, self.fold_column, self.fine_label_column)
                if c is not None]

    def check_header(self, header: list[str]) -> None:
        for column in self.named():
            if column not in header:
                raise TableError(f"{self.path}: no column {column!r} (the header has {listed(header)})")

    def check_columns_seen(self) -> None:
        """JSON Lines has no header: every named column must be in some row."""
        for column in self.named():
            if column not in self.seen_columns:
                raise TableError(f"{self.path}: no row has column {column!r}")

    def record(self, line: int, row: dict[str, Any]) -> dict[str, Any]:
        """One row as a manifest record (``line`` kept for later errors)."""
        self.seen_columns.update(row)
        for column in (self.id_column, self.label_column, self.split_column, self.fold_column):
            if column is not None and column not in row:
                raise TableError(f"{self.path}:{line}: column {column!r} missing")

        def where(column: str) -> str:
            return f"{self.path}:{line}: column {column!r}"

        for column in [c for c in self.named() if c not in self.text_columns]:
            refuse_controls(row.get(column), where(column))
        record: dict[str, Any] = {"id": self._item_id(line, row, where(self.id_column)), "line": line}
        image = row.get(self.image_column) if self.image_column else None
        record["image"] = None if is_missing(image) else str(self.image_root / str(image).strip())  # absolute stays
        for column in self.text_columns:
            record[TEXT_PREFIX + column] = self._text(row.get(column), column)
        for column in self.categorical_columns:
            record[CAT_PREFIX + column] = _optional_scalar(row.get(column))
        record.update(_label(row[self.label_column], self.task, self.label_sep, where(self.label_column)))
        if self.split_column is not None:
            record["split"] = _split(row[self.split_column], where(self.split_column))
        if self.fold_column is not None:
            record["fold"] = _fold(row[self.fold_column], where(self.fold_column))
        if self.fine_label_column is not None:
            record[FINE_LABEL] = _optional_scalar(row.get(self.fine_label_column))
        return record

    def _text(self, value: Any, column: str) -> str | None:
        """A text cell with its control characters but tab, newline and return removed (counted); None if empty."""
        if is_missing(value):
            return None
        text, removed = TEXT_CONTROL.subn("", str(value))
        if removed:
            self.controls_removed[column] += 1
        return None if is_missing(text) else text

    def _item_id(self, line: int, row: dict[str, Any], where: str) -> str:
        """The row's id, unique in the table (or ``row-<line>`` without an id column)."""
        item_id = f"row-{line}" if self.id_column is None else row[self.id_column]
        if is_missing(item_id):
            raise TableError(f"{where}: empty id")
        item_id = _scalar(item_id)
        if item_id in self.seen_ids:
            raise TableError(f"{where}: id {item_id!r} already used on line {self.seen_ids[item_id]}")
        self.seen_ids[item_id] = line
        return item_id

    def frame(self, records: list[dict], split_fractions: Sequence[float], split_seed: int,
              split_stratify: bool = True) -> pd.DataFrame:
        """The records as the manifest's frame: its columns in order, numbers typed, stratified random splits
        where the table has none."""
        frame = pd.DataFrame(records, dtype=object)
        if self.split_column is None:
            labels = None if self.task == "regression" else frame["labels"].tolist()
            frame["split"] = item_splits(len(frame), split_fractions, split_seed, labels, split_stratify)
        if self.task == "regression":
            frame["target"] = frame["target"].astype(np.float64)
        if self.fold_column is not None:
            frame["fold"] = frame["fold"].astype(np.int64)
        columns = ["id", "split", "image", *(TEXT_PREFIX + c for c in self.text_columns),
                   *(CAT_PREFIX + c for c in self.categorical_columns), "labels",
                   *(["target"] if self.task == "regression" else []), *(["fold"] if self.fold_column else []),
                   *([FINE_LABEL] if self.fine_label_column else [])]
        return frame[columns].reset_index(drop=True)


def _extra(path: Path, frame: pd.DataFrame, label_column: str, fine_label_column: str | None) -> dict[str, Any]:
    """The manifest's metadata: where it came from and how many items lack an image or its file."""
    images = [p for p in frame["image"] if p is not None]
    return {"source": str(path), "label_column": label_column, "fine_label_column": fine_label_column,
            "without_image": int(len(frame) - len(images)),
            "missing_image_files": int(sum(not os.path.exists(p) for p in images))}


def refuse_controls(value: Any, where: str) -> None:
    """Raise a TableError naming the first control character of a cell (a JSON list's items included)."""
    for item in value if isinstance(value, list) else [value]:
        found = CONTROL.search(item) if isinstance(item, str) else None
        if found:
            raise TableError(f"{where}: control character {found.group()!r} at character {found.start() + 1} of "
                             f"{item!r}; remove it from the table")


def _optional_scalar(value: Any) -> str | None:
    return None if is_missing(value) else _scalar(value)


def _split(value: Any, where: str) -> str:
    name = "" if is_missing(value) else _scalar(value).lower()
    if name not in SPLIT_ALIASES:
        shown = "empty split" if not name else f"split {value!r}"
        raise TableError(f"{where}: {shown} is not one of train, dev (val, valid, validation), test")
    return SPLIT_ALIASES[name]


def _label(value: Any, task: str, sep: str, where: str) -> dict[str, Any]:
    if task == "regression":
        if isinstance(value, bool) or is_missing(value):
            raise TableError(f"{where}: empty or not a number: {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TableError(f"{where}: not a number: {value!r}") from None
        if not math.isfinite(number):
            raise TableError(f"{where}: not a finite number: {value!r}")
        return {"labels": [], "target": number}
    if isinstance(value, list):
        labels = [_scalar(v) for v in value if not is_missing(v)]
    elif is_missing(value):
        labels = []
    elif task == "multilabel":
        labels = [part.strip() for part in str(value).split(sep) if part.strip()]
    else:
        labels = [_scalar(value)]
    if not labels:
        raise TableError(f"{where}: empty label")
    if task != "multilabel" and len(labels) != 1:
        raise TableError(f"{where}: a {task} task takes one label per row, got {labels}")
    return {"labels": list(dict.fromkeys(labels))}


def _fold(value: Any, where: str) -> int:
    try:
        number = float(value)
        if isinstance(value, bool) or not number.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise TableError(f"{where}: fold {value!r} is not an integer") from None
    return int(number)


def _label_names(records: list[dict], task: str, given: Sequence[str] | None, path: Path, column: str) -> list[str]:
    if task == "regression":
        return []
    if given is not None:
        names = [str(n) for n in given]
        for record in records:
            unknown = [label for label in record["labels"] if label not in names]
            if unknown:
                raise TableError(f"{path}:{record['line']}: column {column!r}: label {unknown[0]!r} is not one of "
                                 f"{listed(names)}")
    else:
        names = class_order({label for record in records for label in record["labels"]})
    if task == "binary" and len(names) != 2:
        first = {}
        for record in records:
            for label in record["labels"]:
                first.setdefault(label, record["line"])
        found = listed((f"{name!r} (first on line {first[name]})" for name in names), quote=False, width=120)
        raise TableError(f"{path}: column {column!r}: a binary task needs 2 classes, found {len(names)}: {found}"
                         f"{_one_per_row(len(names), len(records))}")
    return names


def class_order(classes: Iterable[str]) -> list[str]:
    """The classes as the column holds them, sorted: by value when every class is a number (2 before 10), else as
    text; for binary the second is the positive class (``no``/``yes``, ``false``/``true``, ``0``/``1``)."""
    classes = set(classes)
    try:
        return sorted(classes, key=lambda c: (float(c), c))
    except ValueError:
        return sorted(classes)


def _one_per_row(n_classes: int, n_rows: int) -> str:
    """A hint when nearly every row has a class of its own: the label column is likely an id or a text."""
    if n_classes > 2 and n_classes >= 0.5 * n_rows:
        return f" ({n_classes} classes in {n_rows} rows: is it the column to learn, label_column?)"
    return ""


def write_table_manifest(table_path: str | os.PathLike, manifest_path: str | os.PathLike, **kwargs: Any) -> Manifest:
    """``load_table(table_path, **kwargs)`` written (atomically) to ``manifest_path``."""
    manifest = load_table(table_path, **kwargs)
    write_manifest(manifest, manifest_path)
    return manifest
