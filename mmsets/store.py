"""Ragged HDF5 feature store: one file per (dataset, extractor).

Layout (see docs/formats.md, "Feature stores")::

    ids      (n,)            utf-8 item ids, in write order
    offsets  (n + 1,) int64  item i owns rows offsets[i]:offsets[i + 1]
    data     (N, dim)        one row per element (float16 or float32), chunked
    <field>  (N, ...)        optional per-element arrays (boxes, scores, text, ...)
    attrs                    extractor, model, params (JSON), mmsets version, complete

Zero elements is a valid answer (no face, no OCR text, no image). A file is written under a
``.partial`` name and renamed when complete, so a finished-looking file is always finished. The
partial file records how many items it has committed, so an interrupted extraction resumes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import h5py
import numpy as np

from mmsets import __version__

_STR = h5py.string_dtype("utf-8")


class StoreError(RuntimeError):
    pass


# Datasets read a split's elements into memory when they take at most this much (as stored), else per item.
PRELOAD_BYTES = 2 << 30


class StoreReader:
    """A store's ``data`` (or another field) opened on first use in each process: h5py handles do not
    survive a fork, so each DataLoader worker opens the file for itself. Picklable."""

    def __init__(self, path: str | os.PathLike, field: str = "data") -> None:
        self.path, self.field = Path(path), field
        self._file: h5py.File | None = None
        self._pid: int | None = None

    @property
    def data(self) -> h5py.Dataset:
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file[self.field]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_pid": None}


def partial_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".partial")


class RaggedWriter:
    """Append items one at a time; ``close()`` seals the file and renames it into place.

    ``fields`` declares optional per-element arrays: ``{"boxes": ((4,), "float32"), "text": ((), "str")}``.
    With ``resume=True`` an existing ``.partial`` file written with the same ``params`` is
    continued: ``done_ids`` tells the caller which items it may skip.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        extractor: str,
        dim: int,
        dtype: str = "float16",
        model: str = "",
        params: Mapping[str, Any] | None = None,
        fields: Mapping[str, tuple[tuple[int, ...], str]] | None = None,
        attrs: Mapping[str, Any] | None = None,
        resume: bool = True,
        chunk_rows: int = 256,
        commit_every: int = 64,
    ) -> None:
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dim = int(dim)
        self.fields = dict(fields or {})
        self.commit_every = commit_every
        self._buffer: list[tuple[str, np.ndarray, dict]] = []
        params_json = json.dumps(dict(params or {}), sort_keys=True, default=str)
        header = {
            "extractor": extractor,
            "model": model,
            "params": params_json,
            "dim": self.dim,
            "dtype": dtype,
            "mmsets_version": __version__,
            "fields": json.dumps(sorted(self.fields)),  # a partial file with other fields is not continued
            **{k: (v if isinstance(v, (int, float, str)) else json.dumps(v, default=str)) for k, v in (attrs or {}).items()},
        }
        self.file = self._open_partial(header, resume) if resume else None
        if self.file is None:
            self.file = self._create(header, dtype, chunk_rows)
        self.n_items = int(self.file.attrs["n_committed"])
        self.n_rows = int(self.file["offsets"][self.n_items])
        self.done_ids = set(self.file["ids"].asstr()[: self.n_items])

    def _create(self, header: dict, dtype: str, chunk_rows: int) -> h5py.File:
        if self.partial.exists():
            self.partial.unlink()
        f = h5py.File(self.partial, "w")
        f.attrs.update(header)
        f.attrs["complete"] = False
        f.attrs["n_committed"] = 0
        f.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=_STR, chunks=(1024,))
        f.create_dataset("offsets", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(1024,))
        f.create_dataset("data", shape=(0, self.dim), maxshape=(None, self.dim), dtype=dtype,
                         chunks=(chunk_rows, self.dim))
        for name, (tail, fdtype) in self.fields.items():
            h5dtype = _STR if fdtype == "str" else fdtype
            f.create_dataset(name, shape=(0, *tail), maxshape=(None, *tail), dtype=h5dtype,
                             chunks=(chunk_rows, *tail))
        return f

    def _open_partial(self, header: dict, resume: bool) -> h5py.File | None:
        if not self.partial.exists():
            return None
        try:
            f = h5py.File(self.partial, "r+")
        except OSError:  # killed mid-write: the partial file is unreadable, start over
            return None
        try:
            same = all(f.attrs.get(k) == v for k, v in header.items() if k != "mmsets_version")
            if not same:
                f.close()
                return None
            # What a commit marked written must read back whole; else the kill tore it: start over.
            n = int(f.attrs["n_committed"])
            offsets = f["offsets"][: n + 1]
            rows = int(offsets[-1])
            if len(offsets) != n + 1 or offsets[0] != 0 or (np.diff(offsets) < 0).any() or rows > len(f["data"]):
                raise StoreError("offsets disagree with the committed items")
            f["ids"].asstr()[:n]
            for name, (_, dtype) in self.fields.items():
                if len(f[name]) < rows:
                    raise StoreError(f"field {name!r} is shorter than the committed rows")
                if dtype == "str" and rows:
                    f[name].asstr()[max(0, rows - 4096):rows]
            # Drop anything written after the last commit so every array agrees again.
            f["ids"].resize((n,))
            f["offsets"].resize((n + 1,))
            f["data"].resize((rows, self.dim))
            for name in self.fields:
                f[name].resize((rows, *f[name].shape[1:]))
            return f
        except Exception:  # noqa: BLE001 - any damage (h5py raises OSError, KeyError, ValueError...) means start over
            f.close()
            return None

    def add(self, item_id: str, data: np.ndarray, **fields: Sequence[Any]) -> None:
        """Append one item with ``data`` of shape (k, dim); k may be 0. It reaches the file at the next commit."""
        data = np.array(data, dtype=np.float32).reshape(-1, self.dim)  # a copy: the caller may reuse its array
        k = data.shape[0]
        if set(fields) != set(self.fields):
            raise StoreError(f"item {item_id!r}: expected fields {sorted(self.fields)}, got {sorted(fields)}")
        checked = {}
        for name, values in fields.items():
            tail, dtype = self.fields[name]
            if dtype == "str":
                values = [str(v) for v in values]
            else:
                try:
                    values = np.array(values, dtype=dtype).reshape((k, *tail))
                except ValueError:
                    raise StoreError(f"item {item_id!r}: field {name!r} has shape {np.shape(values)}, "
                                     f"expected ({k}, {', '.join(map(str, tail))})") from None
            if len(values) != k:
                raise StoreError(f"item {item_id!r}: field {name!r} has {len(values)} values for {k} elements")
            checked[name] = values
        self._buffer.append((item_id, data, checked))
        self.n_items += 1
        self.n_rows += k
        self.done_ids.add(item_id)
        if len(self._buffer) >= self.commit_every:
            self.commit()

    def commit(self) -> None:
        """Write the buffered items, one resize and write per array (per-item writes cost more than a
        GPU forward), then mark them committed."""
        f = self.file
        if self._buffer:
            start_item = self.n_items - len(self._buffer)
            start_row = self.n_rows - sum(len(data) for _, data, _ in self._buffer)
            counts = np.array([len(data) for _, data, _ in self._buffer], np.int64)
            f["ids"].resize((self.n_items,))
            f["ids"][start_item:] = [item_id for item_id, _, _ in self._buffer]
            f["offsets"].resize((self.n_items + 1,))
            f["offsets"][start_item + 1:] = start_row + np.cumsum(counts)
            if self.n_rows > start_row:
                f["data"].resize((self.n_rows, self.dim))
                f["data"][start_row:] = np.concatenate([data for _, data, _ in self._buffer])
                for name, (tail, dtype) in self.fields.items():
                    values = [fields[name] for _, _, fields in self._buffer]
                    f[name].resize((self.n_rows, *tail))
                    f[name][start_row:] = ([v for part in values for v in part] if dtype == "str"
                                           else np.concatenate(values))
            self._buffer = []
            f.flush()  # the rows reach the file before the count that says they are there
        f.attrs["n_committed"] = self.n_items
        f.flush()

    def counts(self) -> np.ndarray:
        """Elements per item written so far, buffered ones included."""
        self.commit()
        return np.diff(self.file["offsets"][: self.n_items + 1])

    def close(self, **summary: Any) -> Path:
        """Seal the file (``summary`` goes into attrs as JSON) and rename it into place."""
        self.commit()
        if summary:
            self.file.attrs["summary"] = json.dumps(summary, sort_keys=True, default=str)
        self.file.attrs["complete"] = True
        self.file.close()
        os.replace(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        """Leave the partial file (committed items only) for a later resume."""
        if self.file.id.valid:
            self.commit()
            self.file.close()

    def __enter__(self) -> "RaggedWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class RaggedStore:
    """Read-only view of a finished store; only ``ids`` and ``offsets`` are held in memory."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as err:
            raise StoreError(f"{self.path}: not a readable HDF5 store ({err})") from err
        if not bool(self.file.attrs.get("complete", False)):
            self.file.close()
            raise StoreError(f"{self.path}: store was not finished (interrupted write)")
        self.attrs = dict(self.file.attrs)
        self.ids = list(self.file["ids"].asstr()[:])
        self.offsets = self.file["offsets"][:]
        self.index = {item_id: i for i, item_id in enumerate(self.ids)}
        self.dim = int(self.attrs["dim"])

    @property
    def params(self) -> dict:
        return json.loads(self.attrs.get("params", "{}"))

    @property
    def summary(self) -> dict:
        return json.loads(self.attrs.get("summary", "{}"))

    @property
    def fields(self) -> list[str]:
        return [k for k in self.file.keys() if k not in ("ids", "offsets", "data")]

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.index

    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def rows(self, item_id: str) -> slice:
        """The rows of ``item_id``'s elements in ``data`` and the per-element fields."""
        try:
            i = self.index[item_id]
        except KeyError:
            raise KeyError(f"item {item_id!r} is not in store {self.path}") from None
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def get(self, ids: Iterable[str], field: str = "data") -> list[np.ndarray]:
        """Elements of each id, in the order given, reading only their rows."""
        ds = self.file[field]
        out = []
        for item_id in ids:
            rows = self.rows(item_id)
            values = ds[rows]
            if ds.dtype.kind == "O":
                values = np.array([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object)
            out.append(values)
        return out

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "RaggedStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def store_modalities(store: RaggedStore) -> list[str] | None:
    """The modality names a token store records in its ``modalities`` attribute, if any."""
    names = store.attrs.get("modalities")
    if names is None:
        return None
    return [str(n) for n in (json.loads(names) if isinstance(names, str) else names)]
