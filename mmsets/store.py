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
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import h5py
import numpy as np

from mmsets import __version__

_STR = h5py.string_dtype("utf-8")
COPY_ROWS = 1 << 16  # rows per block when a resume or a gather copies a store's rows
INPUTS = "inputs"  # per item: a fingerprint of what it was made from (a resume checks it)
# the attributes every store has (docs/formats.md); the others are its extractor's own
HEADER = frozenset({"extractor", "model", "params", "dim", "dtype", "mmsets_version", "fields", "has_inputs",
                    "complete", "n_committed", "summary"})
log = logging.getLogger(__name__)


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


def _copy_rows(source: h5py.Dataset, target: h5py.Dataset, rows: int, at: int) -> None:
    """``source``'s first ``rows`` rows into ``target`` from row ``at``, COPY_ROWS at a time (bounded memory)."""
    for start in range(0, rows, COPY_ROWS):
        block = source[start:min(rows, start + COPY_ROWS)]
        target[at + start:at + start + len(block)] = block


def partial_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".partial")


class RaggedWriter:
    """Append items one at a time; ``close()`` seals the file and renames it into place.

    ``fields`` declares optional per-element arrays: ``{"boxes": ((4,), "float32"), "text": ((), "str")}``.
    With ``resume=True`` an existing ``.partial`` file written with the same ``params`` is
    continued: ``done_ids`` tells the caller which items it may skip. ``inputs`` ({id: fingerprint of what
    the item was made from}, ``mmsets.extract.fingerprints.item_inputs``) is kept per item, and a partial file is
    continued only when every committed item's fingerprint is still the same: else it starts over, and
    ``restarted`` says why. A continued file is first copied, committed items only, into a fresh one: what a
    kill tore after the last commit (a half-written string heap) is never written to again.
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
        inputs: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.inputs = dict(inputs) if inputs is not None else None
        self.restarted: str | None = None  # why a partial file was not continued
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
            "has_inputs": self.inputs is not None,
            **{k: (v if isinstance(v, (int, float, str)) else json.dumps(v, default=str)) for k, v in (attrs or {}).items()},
        }
        self.chunk_rows = chunk_rows
        self.file = self._open_partial(header) if resume else None
        if self.file is None:
            if self.restarted:
                log.warning("%s: starting over: %s", self.partial, self.restarted)
            self.file = self._create(self.partial, header, dtype, chunk_rows)
        self.n_items = int(self.file.attrs["n_committed"])
        self.n_rows = int(self.file["offsets"][self.n_items])
        self.done_ids = set(self.file["ids"].asstr()[: self.n_items])

    def _create(self, path: Path, header: dict, dtype: str, chunk_rows: int) -> h5py.File:
        if path.exists():
            path.unlink()
        f = h5py.File(path, "w")
        f.attrs.update(header)
        f.attrs["complete"] = False
        f.attrs["n_committed"] = 0
        f.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=_STR, chunks=(1024,))
        if self.inputs is not None:
            f.create_dataset(INPUTS, shape=(0,), maxshape=(None,), dtype=_STR, chunks=(1024,))
        f.create_dataset("offsets", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(1024,))
        f.create_dataset("data", shape=(0, self.dim), maxshape=(None, self.dim), dtype=dtype,
                         chunks=(chunk_rows, self.dim))
        for name, (tail, fdtype) in self.fields.items():
            h5dtype = _STR if fdtype == "str" else fdtype
            f.create_dataset(name, shape=(0, *tail), maxshape=(None, *tail), dtype=h5dtype,
                             chunks=(chunk_rows, *tail))
        return f

    def _open_partial(self, header: dict) -> h5py.File | None:
        """The partial file's committed items, copied into a fresh partial file; None (and ``restarted``
        set) when there is nothing to continue: no file, other settings, changed inputs or damage."""
        if not self.partial.exists():
            return None
        try:
            old = h5py.File(self.partial, "r")
        except OSError as err:  # killed mid-write: the partial file is unreadable, start over
            self.restarted = f"the partial file does not open ({err})"
            return None
        try:
            changed = [k for k, v in header.items() if k != "mmsets_version" and old.attrs.get(k) != v]
            if changed:
                self.restarted = f"it was written with other {', '.join(changed)}"
                return None
            committed = self._read_committed(old)
            if committed is None:
                return None
            return self._copy_committed(old, committed, header)
        except Exception as err:  # noqa: BLE001 - any damage (h5py raises OSError, KeyError, ValueError...)
            self.restarted = f"its committed items do not read back ({type(err).__name__}: {err})"
            return None
        finally:
            old.close()

    def _read_committed(self, f: h5py.File) -> tuple | None:
        """The committed ids, offsets, string fields and inputs, checked; None (``restarted`` set) when an
        item's inputs changed. Numeric rows are copied later, in blocks."""
        n = int(f.attrs["n_committed"])
        offsets = f["offsets"][: n + 1]
        rows = int(offsets[-1])
        if len(offsets) != n + 1 or offsets[0] != 0 or (np.diff(offsets) < 0).any() or rows > len(f["data"]):
            raise StoreError("offsets disagree with the committed items")
        ids = list(f["ids"].asstr()[:n])
        inputs = None
        if self.inputs is not None:
            inputs = list(f[INPUTS].asstr()[:n])
            stale = [i for i, key in zip(ids, inputs) if self.inputs.get(i) != key]
            if stale:
                self.restarted = (f"{len(stale)} of its {n} committed items were made from other inputs (the "
                                  f"manifest row or the image file changed, or the item is gone), first "
                                  f"{stale[0]!r}")
                return None
        fields = {}
        for name, (_, dtype) in self.fields.items():
            if len(f[name]) < rows:
                raise StoreError(f"field {name!r} is shorter than the committed rows")
            fields[name] = list(f[name].asstr()[:rows]) if dtype == "str" else None
        return ids, offsets, fields, inputs

    def _copy_committed(self, old: h5py.File, committed: tuple, header: dict) -> h5py.File:
        """A fresh partial file holding ``old``'s committed items (numeric rows copied in blocks), in its place."""
        ids, offsets, fields, inputs = committed
        n, rows = len(ids), int(offsets[-1])
        fresh = self.partial.with_name(self.partial.name + ".resume")
        f = self._create(fresh, header, header["dtype"], self.chunk_rows)
        try:
            f["ids"].resize((n,))
            f["ids"][:] = ids
            if inputs is not None:
                f[INPUTS].resize((n,))
                f[INPUTS][:] = inputs
            f["offsets"].resize((n + 1,))
            f["offsets"][:] = offsets
            for name in ["data", *fields]:
                f[name].resize((rows, *f[name].shape[1:]))
                if fields.get(name) is not None:  # strings, read and checked already
                    f[name][:] = fields[name]
                    continue
                _copy_rows(old[name], f[name], rows, at=0)
            f.attrs["n_committed"] = n
        finally:
            f.close()
        os.replace(fresh, self.partial)
        return h5py.File(self.partial, "r+")

    def add(self, item_id: str, data: np.ndarray, **fields: Sequence[Any]) -> None:
        """Append one item with ``data`` of shape (k, dim); k may be 0. It reaches the file at the next commit."""
        data = np.array(data, dtype=np.float32).reshape(-1, self.dim)  # a copy: the caller may reuse its array
        if not np.isfinite(data).all():
            raise StoreError(f"{self.path.name}: item {item_id!r}: non-finite values (NaN or inf) in its "
                             f"{data.shape[0]} element(s); nothing of it was stored")
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
            if self.inputs is not None:
                f[INPUTS].resize((self.n_items,))
                f[INPUTS][start_item:] = [self.inputs.get(item_id, "") for item_id, _, _ in self._buffer]
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

    def add_store(self, store: "RaggedStore") -> None:
        """Append every item of a finished ``store`` written with the same header (a shard of this one), its
        numeric rows copied in blocks; its items' input fingerprints come along (kept when ``inputs`` is given)."""
        self.commit()
        f, n, rows = self.file, len(store), int(store.offsets[-1])
        duplicated = self.done_ids.intersection(store.ids)
        if duplicated:
            raise StoreError(f"{store.path}: {len(duplicated)} item(s) are already in {self.path.name}, "
                             f"first {sorted(duplicated)[0]!r}")
        f["ids"].resize((self.n_items + n,))
        f["ids"][self.n_items:] = store.ids
        if self.inputs is not None:
            keys = list(store.file[INPUTS].asstr()[:]) if INPUTS in store.file else [""] * n
            self.inputs.update(zip(store.ids, keys))
            f[INPUTS].resize((self.n_items + n,))
            f[INPUTS][self.n_items:] = keys
        f["offsets"].resize((self.n_items + n + 1,))
        f["offsets"][self.n_items + 1:] = self.n_rows + store.offsets[1:]
        for name in ["data", *self.fields]:
            f[name].resize((self.n_rows + rows, *f[name].shape[1:]))
            _copy_rows(store.file[name], f[name], rows, at=self.n_rows)
        self.n_items += n
        self.n_rows += rows
        self.done_ids.update(store.ids)
        f.flush()
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


def missing_store(path: Path) -> str:
    """Why a store is not at ``path``: the stores its folder holds and the extractors a store can be named after."""
    from mmsets.listing import listed
    from mmsets.plan.extractors import EXTRACTORS

    if not path.parent.is_dir():
        held = f"there is no folder {str(path.parent)!r}"
    else:
        here = sorted(p.stem for p in path.parent.glob("*.h5"))
        held = f"its folder holds {listed(here)}" if here else "its folder holds no store"
    return (f"no feature store {path.stem!r} at {str(path)!r}: {held}; a store is named after its extractor "
            f"({listed(EXTRACTORS, limit=len(EXTRACTORS))}) or a variant of it (name@variant)")


class RaggedStore:
    """Read-only view of a finished store; only ``ids`` and ``offsets`` are held in memory."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(missing_store(self.path))
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
        return [k for k in self.file.keys() if k not in ("ids", "offsets", "data", INPUTS)]

    def writer_settings(self) -> dict[str, Any]:
        """The RaggedWriter keywords that write a store with this one's header: extractor, model, params,
        dim, dtype, per-element fields and the extractor's own attributes."""
        fields = {name: (self.file[name].shape[1:], "str" if self.file[name].dtype.kind == "O"
                         else self.file[name].dtype.str) for name in self.fields}
        own = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in self.attrs.items() if k not in HEADER}
        return {"extractor": str(self.attrs["extractor"]), "model": str(self.attrs["model"]), "params": self.params,
                "dim": self.dim, "dtype": str(self.attrs["dtype"]), "fields": fields, "attrs": own}

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
