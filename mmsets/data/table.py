"""Tables of items (CSV or JSON Lines) as manifests, and a generated Ads-Parallelity-shaped demo table.

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
a ``split_column`` items are split at random (``split_fractions``, ``split_seed``); k-fold runs
ignore the split. Every error names the table line and the column.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from mmsets.data.manifest import CAT_PREFIX, FINE_LABEL, TASKS, TEXT_PREFIX, Manifest, is_missing, write_manifest
from mmsets.io import atomic_path

SPLIT_ALIASES = {"train": "train", "training": "train", "dev": "dev", "val": "dev", "valid": "dev",
                 "validation": "dev", "test": "test", "testing": "test"}


MAX_CELL = 64 << 20  # characters in one CSV cell (the csv module's own limit is 128 KiB)


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
        split_column: train/dev/test (also val, valid, validation); None: random ``split_fractions``.
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
    label_sep = "|" if label_sep is None else label_sep
    root = (Path(image_root) if image_root is not None else path.parent).absolute()  # paths kept absolute
    named = [c for c in (id_column, image_column, *text_columns, *categorical_columns, label_column, split_column,
                         fold_column, fine_label_column) if c is not None]
    header, rows = _rows(path)
    if header is not None:
        for column in named:
            if column not in header:
                raise TableError(f"{path}: no column {column!r} (the header has {header})")

    records, seen_ids, seen_columns = [], {}, set()
    required = [c for c in (id_column, label_column, split_column, fold_column) if c is not None]
    for line, row in rows:
        seen_columns.update(row)
        for column in required:
            if column not in row:
                raise TableError(f"{path}:{line}: column {column!r} missing")

        def where(column: str) -> str:
            return f"{path}:{line}: column {column!r}"

        item_id = f"row-{line}" if id_column is None else row[id_column]
        if is_missing(item_id):
            raise TableError(f"{where(id_column)}: empty id")
        item_id = _scalar(item_id)
        if item_id in seen_ids:
            raise TableError(f"{where(id_column)}: id {item_id!r} already used on line {seen_ids[item_id]}")
        seen_ids[item_id] = line
        record: dict[str, Any] = {"id": item_id, "line": line}
        image = row.get(image_column) if image_column else None
        record["image"] = None if is_missing(image) else str(root / str(image).strip())  # an absolute path stays
        for column in text_columns:
            value = row.get(column)
            record[TEXT_PREFIX + column] = None if is_missing(value) else str(value)
        for column in categorical_columns:
            value = row.get(column)
            record[CAT_PREFIX + column] = None if is_missing(value) else _scalar(value)
        record.update(_label(row[label_column], task, label_sep, where(label_column)))
        if split_column is not None:
            value = "" if is_missing(row[split_column]) else _scalar(row[split_column]).lower()
            if value not in SPLIT_ALIASES:
                shown = "empty split" if not value else f"split {row[split_column]!r}"
                raise TableError(f"{where(split_column)}: {shown} is not one of train, dev (val, valid, validation), "
                                 f"test")
            record["split"] = SPLIT_ALIASES[value]
        if fold_column is not None:
            record["fold"] = _fold(row[fold_column], where(fold_column))
        if fine_label_column is not None:
            value = row.get(fine_label_column)
            record[FINE_LABEL] = None if is_missing(value) else _scalar(value)
        records.append(record)
    if not records:
        raise TableError(f"{path}: no rows")
    if header is None:
        for column in named:
            if column not in seen_columns:
                raise TableError(f"{path}: no row has column {column!r}")

    names = _label_names(records, task, label_names, path, label_column)
    frame = pd.DataFrame(records, dtype=object)
    if split_column is None:
        frame["split"] = _random_splits(len(frame), split_fractions, split_seed)
    if task == "regression":
        frame["target"] = frame["target"].astype(np.float64)
    if fold_column is not None:
        frame["fold"] = frame["fold"].astype(np.int64)
    columns = ["id", "split", "image", *(TEXT_PREFIX + c for c in text_columns),
               *(CAT_PREFIX + c for c in categorical_columns), "labels",
               *(["target"] if task == "regression" else []), *(["fold"] if fold_column else []),
               *([FINE_LABEL] if fine_label_column else [])]
    images = [p for p in frame["image"] if p is not None]
    extra = {"source": str(path), "label_column": label_column, "fine_label_column": fine_label_column,
             "without_image": int(len(frame) - len(images)),
             "missing_image_files": int(sum(not os.path.exists(p) for p in images))}
    return Manifest(frame[columns].reset_index(drop=True), names, task, dataset or path.stem, extra)


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
                                 f"{names}")
    else:
        names = sorted({label for record in records for label in record["labels"]})
    if task == "binary" and len(names) != 2:
        first = {}
        for record in records:
            for label in record["labels"]:
                first.setdefault(label, record["line"])
        found = ", ".join(f"{name!r} (first on line {first[name]})" for name in names)
        raise TableError(f"{path}: column {column!r}: a binary task needs 2 classes, found {len(names)}: {found}")
    return names


def _random_splits(n: int, fractions: Sequence[float], seed: int) -> list[str]:
    total = float(sum(fractions))
    n_train, n_dev = round(n * fractions[0] / total), round(n * fractions[1] / total)
    names = np.array(["train"] * n_train + ["dev"] * n_dev + ["test"] * (n - n_train - n_dev), dtype=object)
    return list(names[np.random.default_rng(seed).permutation(n)])


def write_table_manifest(table_path: str | os.PathLike, manifest_path: str | os.PathLike, **kwargs: Any) -> Manifest:
    """``load_table(table_path, **kwargs)`` written (atomically) to ``manifest_path``."""
    manifest = load_table(table_path, **kwargs)
    write_manifest(manifest, manifest_path)
    return manifest


# ------------------------------------------------------------------------------- demo table

# Four ad themes, each with an image motif and slogans; an ad is "parallel" when its slogan's theme is
# its image's theme. Telling needs both modalities: neither the image nor the slogan alone says it.
THEMES = ("sun", "sea", "forest", "city")
SLOGANS = {
    "sun": ["Soak up the summer sun", "Bright days start here", "Feel the warm sunshine", "Golden light all day long"],
    "sea": ["Dive into the deep blue sea", "Ride the ocean waves", "Sail away this weekend", "Let the tide take you"],
    "forest": ["Breathe the fresh forest air", "Walk among the tall pines", "Return to the green woods",
               "Nature grows here"],
    "city": ["Live the big city nights", "Downtown never sleeps", "Your skyline, your rules", "Rise above the streets"],
}
APPEAL = {"sun": 0.6, "sea": 0.3, "forest": 0.0, "city": -0.3}  # the regression target's theme effect
DEMO_COLUMNS = {"id_column": "id", "image_column": "image", "text_columns": ["slogan"],
                "categorical_columns": ["naturalness", "concreteness"]}
DEMO_LABELS = {"binary": "parallel", "regression": "appeal"}


def generate_table_demo(out_dir: str | os.PathLike, n_items: int = 200, seed: int = 0, task: str = "binary",
                        image_size: int = 64, missing_image: float = 0.05) -> dict[str, Any]:
    """Write ``out_dir/table.csv`` and ``out_dir/images/<id>.png`` (PIL only) shaped like Ads-Parallelity.

    Columns: id, image (relative path, empty for ``missing_image`` of the items), slogan, naturalness
    and concreteness (ratings 1-5), parallel ("parallel" when the slogan's theme is the image's,
    half of the items), appeal (a float around 1.5-3.7: 2 + the image theme's effect + 0.8 if parallel
    + concreteness / 10 + noise; positive, so MAPE means something).
    Returns the ``load_table`` keyword arguments (``path`` included) for ``task`` ("binary": the
    parallel label, "regression": appeal).
    """
    if task not in DEMO_LABELS:
        raise ValueError(f"task {task!r} is not one of {sorted(DEMO_LABELS)}")
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    width = max(3, len(str(n_items)))
    parallel = rng.permutation(np.arange(n_items) % 2 == 0)  # exactly half, in random order
    no_image = set(rng.permutation(n_items)[: round(missing_image * n_items)].tolist())
    rows = []
    for i in range(n_items):
        item_id = f"ad-{i + 1:0{width}d}"
        theme = THEMES[rng.integers(len(THEMES))]
        text_theme = theme if parallel[i] else THEMES[(THEMES.index(theme) + rng.integers(1, len(THEMES))) % 4]
        image = _draw_ad(rng, theme, image_size)  # drawn even when dropped: the same rng stream
        relative = f"images/{item_id}.png"
        if i not in no_image:
            with atomic_path(out_dir / relative) as tmp:
                image.save(tmp, format="PNG")
        natural = int(np.clip(rng.normal(2.0 if theme == "city" else 4.0, 0.8), 1, 5).round())
        concrete = int(rng.integers(1, 6))
        appeal = 2.0 + APPEAL[theme] + 0.8 * parallel[i] + concrete / 10 + rng.normal(0, 0.15)
        rows.append({"id": item_id, "image": "" if i in no_image else relative,
                     "slogan": str(rng.choice(SLOGANS[text_theme])), "naturalness": natural,
                     "concreteness": concrete, "parallel": "parallel" if parallel[i] else "non-parallel",
                     # Ads-Parallelity's finer classes; here an equivalent pair is one whose slogan is concrete
                     "parallel_type": ("parallel-equivalent" if concrete >= 3 else "parallel-non-equivalent")
                     if parallel[i] else "non-parallel",
                     "appeal": round(float(appeal), 4)})
    table = out_dir / "table.csv"
    with atomic_path(table) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    fine = {"fine_label_column": "parallel_type"} if task == "binary" else {}
    return {"path": str(table), **DEMO_COLUMNS, **fine, "label_column": DEMO_LABELS[task], "task": task,
            "dataset": f"ads-demo-{task}"}


def write_table_demo(out_dir: str | os.PathLike, manifest_path: str | os.PathLike, **kwargs: Any) -> Manifest:
    """``generate_table_demo(out_dir, **kwargs)`` loaded and written to ``manifest_path``."""
    load_kwargs = generate_table_demo(out_dir, **kwargs)
    return write_table_manifest(load_kwargs.pop("path"), manifest_path, **load_kwargs)


def _rgb(rng: np.random.Generator, base: tuple[int, int, int], jitter: int = 25) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-jitter, jitter + 1), 0, 255)) for c in base)


def _draw_ad(rng: np.random.Generator, theme: str, size: int) -> Image.Image:
    """A coarse motif per theme (what a frozen ImageNet CNN can tell apart at 64-224 px), plus clutter."""
    backgrounds = {"sun": (120, 190, 240), "sea": (150, 200, 230), "forest": (215, 230, 200), "city": (60, 60, 90)}
    img = Image.new("RGB", (size, size), _rgb(rng, backgrounds[theme]))
    draw = ImageDraw.Draw(img)
    u = lambda lo, hi: float(rng.uniform(lo * size, hi * size))  # noqa: E731
    if theme == "sun":
        r, cx, cy = u(0.15, 0.25), u(0.3, 0.7), u(0.25, 0.45)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_rgb(rng, (250, 210, 40)))
        draw.rectangle((0, u(0.75, 0.85), size, size), fill=_rgb(rng, (230, 200, 140)))
    elif theme == "sea":
        top = u(0.4, 0.55)
        draw.rectangle((0, top, size, size), fill=_rgb(rng, (20, 70, 160)))
        for k in range(4):
            y = top + (k + 1) * (size - top) / 5
            draw.arc((u(-0.2, 0.2), y - size * 0.05, u(0.8, 1.2), y + size * 0.05), 0, 180, fill=(235, 245, 255),
                     width=max(1, size // 32))
    elif theme == "forest":
        for _ in range(rng.integers(3, 6)):
            cx, base, h = u(0.05, 0.95), u(0.75, 1.0), u(0.3, 0.55)
            w = h * 0.45
            draw.polygon([(cx - w, base), (cx + w, base), (cx, base - h)], fill=_rgb(rng, (30, 110, 40)))
    else:
        x = 0.0
        while x < size:
            w, h = u(0.1, 0.22), u(0.3, 0.8)
            draw.rectangle((x, size - h, x + w, size), fill=_rgb(rng, (110, 110, 120)))
            for _ in range(3):
                wx, wy = x + float(rng.uniform(0.2, 0.7)) * w, size - float(rng.uniform(0.1, 0.9)) * h
                draw.rectangle((wx, wy, wx + size * 0.03, wy + size * 0.03), fill=(250, 220, 90))
            x += w + u(0.0, 0.04)
    for _ in range(rng.integers(0, 3)):  # neutral clutter
        x0, y0 = u(0, 0.9), u(0, 0.9)
        draw.rectangle((x0, y0, x0 + u(0.03, 0.1), y0 + u(0.03, 0.1)), fill=_rgb(rng, (128, 128, 128), 100))
    return img
