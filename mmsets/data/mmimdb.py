"""MM-IMDb (Arevalo et al., "Gated Multimodal Units for Information Fusion", 2017): loader and download.

The official ``mmimdb.tar.gz`` unpacks to ``mmimdb/split.json`` ({"train", "dev", "test"} id lists)
and ``mmimdb/dataset/<id>.json`` + ``<id>.jpeg``. Each JSON holds at least ``plot`` (list of
paragraphs) and ``genres``; the many other keys (director, cast, ...) are ignored.
"""

from __future__ import annotations

import collections
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd

from mmsets.data.manifest import SPLITS, Manifest
from mmsets.io import write_json
from mmsets.progress import progress as progress_of

log = logging.getLogger(__name__)

DEFAULT_URL = "https://archive.org/download/mmimdb/mmimdb.tar.gz"  # first hosted at lisi1.unal.edu.co
# The 23 genres of MM-IMDb, most frequent first, in the order of the GMU paper (Table 1).
GENRES = [
    "Drama", "Comedy", "Romance", "Thriller", "Crime", "Action", "Adventure", "Horror", "Documentary",
    "Mystery", "Sci-Fi", "Fantasy", "Family", "Biography", "War", "History", "Animation", "Musical",
    "Music", "Western", "Sport", "Short", "Film-Noir",
]
MARKER = ".mmimdb-unpacked"
_MAX_ERRORS = 50


class MMIMDbError(ValueError):
    """A bad item or archive; the message names the item id and file, ``reason`` is a short tag."""

    def __init__(self, message: str, reason: str = "error"):
        super().__init__(message)
        self.reason = reason


def find_root(root: str | os.PathLike, split_file: bool = True) -> Path:
    """The folder holding ``split.json`` and ``dataset/``: ``root`` itself or ``root/mmimdb``
    (``split_file=False``: the folder holding ``dataset/``)."""
    if root is None:
        raise ValueError("MM-IMDb: no root folder given (--root: the unpacked folder holding split.json)")
    root = Path(root)
    wanted = "split.json" if split_file else "dataset"
    for cand in (root, root / "mmimdb"):
        if (cand / wanted).exists():
            return cand
    raise FileNotFoundError(f"no MM-IMDb {wanted} in {root} or {root / 'mmimdb'}")


def load_mmimdb(root: str | os.PathLike, strict: bool = False, labelled: bool = True) -> Manifest:
    """Read MM-IMDb into a manifest (text fields ``plot`` and ``title``, 23 genre labels).

    A bad item (missing, invalid or non-UTF-8 JSON, no plot/genres) is skipped, logged and counted in
    ``extra["skipped"]``; with ``strict=True`` it raises ``MMIMDbError`` instead. ``labelled=False`` reads
    new items in the same layout: ``split.json`` and ``genres`` may be absent (then every ``dataset/<id>.json``
    is an item of split "test", with the genres it has, if any).
    """
    root = find_root(root, split_file=labelled).resolve()
    data_dir = root / "dataset"
    files = {e.name for e in os.scandir(data_dir)} if data_dir.is_dir() else set()
    if labelled or (root / "split.json").is_file():
        splits = _read_splits(root / "split.json")
    else:
        splits = {"test": sorted(name.removesuffix(".json") for name in files if name.endswith(".json"))}
    known = set(GENRES)
    rows, seen = [], set()
    skipped, errors, dropped = collections.Counter(), [], collections.Counter()
    for split in SPLITS:
        for item_id in splits.get(split, []):
            item_id = str(item_id)
            try:
                if item_id in seen:
                    raise MMIMDbError(f"item {item_id}: listed twice in {root / 'split.json'}", "duplicate_id")
                seen.add(item_id)
                if f"{item_id}.json" not in files:
                    raise MMIMDbError(f"item {item_id}: no {data_dir / (item_id + '.json')}", "missing_json")
                item = _read_item(data_dir / f"{item_id}.json", item_id, labelled)
            except MMIMDbError as err:
                if strict:
                    raise
                skipped[err.reason] += 1
                if len(errors) < _MAX_ERRORS:
                    errors.append({"id": item_id, "reason": err.reason})
                    log.warning("skipping %s", err)
                continue
            genres = set(item["genres"])
            dropped.update(g for g in genres if g not in known)
            image = f"{item_id}.jpeg"
            rows.append({
                "id": item_id,
                "split": split,
                "image": str(data_dir / image) if image in files else None,
                "text_plot": _text(item["plot"]),
                "text_title": _text(item.get("title")),
                "labels": [g for g in GENRES if g in genres],
            })
    # object columns keep None as None (pandas would otherwise infer str and turn None into NaN)
    columns = ["id", "split", "image", "text_plot", "text_title", "labels"]
    frame = pd.DataFrame({c: pd.Series([r[c] for r in rows], dtype=object) for c in columns})
    if skipped:
        log.warning("MM-IMDb %s: skipped %d items %s", root, sum(skipped.values()), dict(skipped))
    extra = {
        "root": str(root),
        "items": len(frame),
        "skipped": dict(skipped),
        "errors": errors,
        "dropped_genres": dict(dropped),
        "without_image": int(frame["image"].isna().sum()),
        "without_plot": int(frame["text_plot"].isna().sum()),
        "without_labels": int((frame["labels"].map(len) == 0).sum()),
    }
    return Manifest(frame, list(GENRES), task="multilabel", dataset="mmimdb", extra=extra)


def _read_splits(path: Path) -> dict:
    try:
        splits = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MMIMDbError(f"{path}: not valid UTF-8 JSON ({err})", "bad_split") from err
    if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
        raise MMIMDbError(f"{path}: expected an object of id lists, {{\"train\": [...], \"dev\": [...], "
                          f"\"test\": [...]}}", "bad_split")
    return splits


def _read_item(path: Path, item_id: str, labelled: bool = True) -> dict:
    try:
        item = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise MMIMDbError(f"item {item_id}: {path} is not UTF-8 ({err})", "not_utf8") from err
    except json.JSONDecodeError as err:
        raise MMIMDbError(f"item {item_id}: {path} is not valid JSON ({err})", "bad_json") from err
    if isinstance(item, dict) and not labelled:
        item.setdefault("genres", [])
    if not isinstance(item, dict) or "plot" not in item or "genres" not in item:
        raise MMIMDbError(f"item {item_id}: {path} lacks 'plot' or 'genres'", "missing_field")
    for key in ("plot", "genres"):
        value = item[key]
        if not (isinstance(value, str) or isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise MMIMDbError(f"item {item_id}: {path}: {key!r} is not a list of strings", "bad_field")
    if isinstance(item["genres"], str):
        item["genres"] = [item["genres"]]
    return item


def _text(value) -> str | None:
    """Paragraphs joined one per line; empty or whitespace-only text becomes None."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return None
    lines = [v.strip() for v in value if isinstance(v, str) and v.strip()]
    return "\n".join(lines) or None


def download_mmimdb(
    dest: str | os.PathLike,
    url: str = DEFAULT_URL,
    sha256: str | None = None,
    chunk: int = 1 << 20,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download the MM-IMDb archive to ``dest`` (a file, or a folder to put ``mmimdb.tar.gz`` in).

    Bytes go to ``<dest>.part``; an interrupted download resumes from it with an HTTP Range request,
    also on the next call. The file is renamed to ``dest`` only when complete and, if ``sha256`` is
    given, verified (on mismatch the file is deleted and ``MMIMDbError`` raised).
    """
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / (url.rstrip("/").rsplit("/", 1)[-1] or "mmimdb.tar.gz")
    if dest.exists():
        if sha256:
            _check_sha256(dest, sha256)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, chunk, timeout, progress)
            break
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
            permanent = isinstance(err, urllib.error.HTTPError) and err.code < 500
            if permanent or attempt == retries:
                raise
            log.warning("download of %s interrupted (%s); resuming (%d/%d)", url, err, attempt + 1, retries)
            time.sleep(min(2**attempt, 30))
    if sha256:
        _check_sha256(part, sha256)
    os.replace(part, dest)
    return dest


def _fetch(url: str, part: Path, chunk: int, timeout: float, progress: bool) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "mmsets"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code != 416:
            raise
        # Range starts at or past the end: the .part is complete if its size is the server's total.
        if _content_range_total(err.headers.get("Content-Range")) == offset:
            return
        part.unlink()
        raise urllib.error.URLError(f"stale partial download {part} removed") from err
    with resp:
        if resp.status == 206:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                part.unlink()
                raise urllib.error.URLError(f"server answered range {resp.headers.get('Content-Range')!r}")
            total = _content_range_total(resp.headers.get("Content-Range"))
        else:  # 200: the server ignored the Range header, start over
            offset = 0
            total = int(resp.headers["Content-Length"]) if resp.headers.get("Content-Length") else None
        with open(part, "ab" if offset else "wb") as f, progress_of(
            total, part.name.removesuffix(".part"), "B", enabled=progress, initial=offset, unit_scale=True,
            unit_divisor=1024,
        ) as bar:
            while block := resp.read(chunk):
                f.write(block)
                bar.update(len(block))
    if total is not None and part.stat().st_size != total:
        raise urllib.error.URLError(f"{part}: got {part.stat().st_size} of {total} bytes")


def _content_range_total(value: str | None) -> int | None:
    m = re.search(r"/(\d+)\s*$", value or "")
    return int(m.group(1)) if m else None


def _check_sha256(path: Path, expected: str) -> None:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    if h.hexdigest() != expected.lower():
        path.unlink()
        raise MMIMDbError(f"{path}: sha256 {h.hexdigest()} != expected {expected}; file deleted", "sha256")


def unpack_mmimdb(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Extract ``archive`` into ``dest_dir`` (tarfile's "data" filter refuses unsafe members).

    Members go to a temporary folder first and are moved into place when all are out; a marker
    file then records the archive, so a second call with the same archive does nothing.
    Returns the dataset root (the folder holding ``split.json``).
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    stamp = {"archive": archive.name, "size": archive.stat().st_size}
    marker = dest_dir / MARKER
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return find_root(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".unpack-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(tmp, filter="data")
        for entry in tmp.iterdir():
            target = dest_dir / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    root = find_root(dest_dir)
    write_json(marker, stamp)
    return root
