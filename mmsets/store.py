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

Nothing wrong is sealed: every write is checked (a failed one leaves the ``.partial`` file only), and
sealing reads the file back (item count, offsets, a CRC-32 per dataset) before the rename. Numeric
datasets carry HDF5's per-chunk fletcher32 checksum, and opening a store checks its offsets. A
``.lock`` file beside the store keeps a second writer out.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import h5py
import numpy as np

from mmsets import __version__

_STR = h5py.string_dtype("utf-8")
COPY_ROWS = 1 << 16  # rows per block when a resume or a gather copies a store's rows
INPUTS = "inputs"  # per item: a fingerprint of what it was made from (a resume checks it)
# the attributes every store has (docs/formats.md); the others are its extractor's own
HEADER = frozenset({"extractor", "model", "params", "dim", "dtype", "mmsets_version", "fields", "has_inputs",
                    "complete", "n_committed", "summary", "checksums"})
CHECKSUMS = "checksums"  # attrs: {dataset: CRC-32 of its committed rows}, JSON (docs/formats.md)
DAMAGED = "the store is damaged: delete it and re-run: snakemake (or mmsets extract) re-extracts it"
log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    pass


# Datasets read a split's elements into memory when they take at most this much (as stored), else per item.
PRELOAD_BYTES = 2 << 30


def one_line(err: BaseException) -> str:
    """An h5py error as one line: the system's reason when HDF5 names one (its message spans lines)."""
    text = str(err)
    system = re.search(r"errno = (\d+), error message = '([^']*)'", text)
    if system:
        return f"{system[2]} (errno {system[1]})"
    if "filter returned failure during read" in text:
        return "its fletcher32 checksum does not match"
    return " ".join(text.split()) or type(err).__name__


def read_failure(path: Path, field: str, rows: slice, err: BaseException) -> StoreError:
    """A StoreError naming the item whose rows ``rows`` of ``field`` did not read back (``err``); a read of the
    whole field names the store only."""
    if rows.start is None:
        return StoreError(f"{path}: {field} does not read back ({one_line(err)}); {DAMAGED}")
    try:
        with h5py.File(path, "r") as f:
            offsets = f["offsets"][:]
            i = int(np.searchsorted(offsets, rows.start, side="right")) - 1
            item = f"item {f['ids'].asstr()[min(max(i, 0), len(f['ids']) - 1)]!r}"
    except Exception:  # noqa: BLE001 - the ids are damaged too: name the rows
        item = f"rows {rows.start}:{rows.stop}"
    return StoreError(f"{path}: {item}: {field} does not read back ({one_line(err)}); {DAMAGED}")


class CheckedRows:
    """A dataset whose reads fail as a StoreError naming the store and the item (a damaged chunk)."""

    def __init__(self, path: Path, field: str, dataset: h5py.Dataset) -> None:
        self.path, self.field, self.dataset = path, field, dataset

    def __getitem__(self, rows: slice) -> np.ndarray:
        try:
            return self.dataset[rows]
        except OSError as err:
            raise read_failure(self.path, self.field, rows, err) from err

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.dataset)


class StoreReader:
    """A store's ``data`` (or another field) opened on first use in each process: h5py handles do not
    survive a fork, so each DataLoader worker opens the file for itself. Picklable."""

    def __init__(self, path: str | os.PathLike, field: str = "data") -> None:
        self.path, self.field = Path(path), field
        self._file: h5py.File | None = None
        self._pid: int | None = None

    @property
    def data(self) -> CheckedRows:
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return CheckedRows(self.path, self.field, self._file[self.field])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_pid": None}


def crc(values: Any, running: int = 0) -> int:
    """``running`` CRC-32 continued over ``values`` as stored: an array's bytes, or strings NUL-terminated."""
    if isinstance(values, np.ndarray) and values.dtype.kind != "O":
        return zlib.crc32(np.ascontiguousarray(values).view(np.uint8), running)
    text = (v.encode() if isinstance(v, str) else bytes(v) for v in values)
    return zlib.crc32(b"".join(v + b"\0" for v in text), running)


def read_block(dataset: h5py.Dataset, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of ``dataset``; strings as str."""
    if dataset.dtype.kind == "O":
        return dataset.asstr()[start:stop]
    return dataset[start:stop]


def _copy_rows(source: h5py.Dataset, target: h5py.Dataset, rows: int, at: int, sums: Sequence[int] = ()) -> list[int]:
    """``source``'s first ``rows`` rows into ``target`` from row ``at``, COPY_ROWS at a time (bounded memory);
    returns each running CRC-32 of ``sums`` continued over the copied rows."""
    sums = list(sums)
    for start in range(0, rows, COPY_ROWS):
        block = read_block(source, start, min(rows, start + COPY_ROWS))
        target[at + start:at + start + len(block)] = block
        sums = [crc(block, running) for running in sums]
    return sums


def dataset_checksums(f: h5py.File, names: Iterable[str]) -> dict[str, int]:
    """The CRC-32 of each dataset of ``names`` as read back from ``f``, COPY_ROWS rows at a time."""
    sums = {}
    for name in names:
        running, dataset = 0, f[name]
        for start in range(0, len(dataset), COPY_ROWS):
            running = crc(read_block(dataset, start, start + COPY_ROWS), running)
        sums[name] = running
    return sums


def offsets_problem(ids: Sequence[str], offsets: np.ndarray, n_rows: int) -> str | None:
    """What is wrong with ``offsets`` for ``ids`` and ``n_rows`` rows of data, naming the first bad item; None if
    nothing: one more offset than ids, starting at 0, never decreasing, ending at the last row."""
    if len(offsets) != len(ids) + 1:
        return f"{len(ids)} ids but {len(offsets)} offsets (expected {len(ids) + 1})"
    if not len(ids):
        return None if offsets[0] == 0 == n_rows else f"no items but offsets {offsets.tolist()} for {n_rows} rows"
    starts, stops = offsets[:-1], offsets[1:]
    bad = np.flatnonzero((stops < starts) | (starts < 0) | (stops > n_rows))
    if offsets[0] != 0:
        bad = np.concatenate([[0], bad])
    if len(bad):
        i = int(bad[0])
        return (f"item {ids[i]!r}: its rows {int(starts[i])}:{int(stops[i])} are not within the {n_rows} rows of "
                f"data in order")
    if offsets[-1] != n_rows:
        return f"item {ids[-1]!r}: the last item ends at row {int(offsets[-1])} but data holds {n_rows} rows"
    return None


def lock_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".lock")


_HELD: dict[Path, list[int]] = {}  # store -> [lock file descriptor, holders]: a process locks a store once


def acquire_lock(path: str | os.PathLike) -> None:
    """Take ``path``'s lock file (flock: the kernel lets go when the holder dies, SIGKILL included) or fail at
    once naming the other writer's pid. Reentrant within a process."""
    key = Path(os.path.abspath(path))
    if key in _HELD:
        _HELD[key][1] += 1
        return
    lock = lock_path(key)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(f"{path}: another writer (pid {other}) is writing this store (lock {lock}); "
                             f"wait for it or stop it, then run again") from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)  # its holder removed it between our open and our lock: lock the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[key] = [fd, 1]


def release_lock(path: str | os.PathLike) -> None:
    key = Path(os.path.abspath(path))
    if key not in _HELD:
        return
    _HELD[key][1] -= 1
    if _HELD[key][1] == 0:
        fd, _ = _HELD.pop(key)
        with contextlib.suppress(FileNotFoundError):
            lock_path(key).unlink()  # removed while still locked: a writer waiting on this file retries
        os.close(fd)


@contextlib.contextmanager
def store_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold ``path``'s writer lock (``acquire_lock``) for the block."""
    acquire_lock(path)
    try:
        yield
    finally:
        release_lock(path)


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

    The writer holds the store's lock file (``acquire_lock``) until it is closed or aborted. A write that fails
    (a full disk) raises a one-line StoreError and leaves the partial file only; ``close`` seals the file only
    when it reads back as written.
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
        self._broken = False  # a write failed: nothing more is written, the partial file is left as it is
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
            **{k: (v if isinstance(v, (int, float, str)) else json.dumps(v, default=str))
               for k, v in (attrs or {}).items()},
        }
        self.chunk_rows = chunk_rows
        acquire_lock(self.path)
        self._locked = True
        try:
            self._open(header, dtype, resume)
        except BaseException:
            self._close_quietly()
            self._unlock()
            raise

    def _open(self, header: dict, dtype: str, resume: bool) -> None:
        self.file: h5py.File | None = None
        self.file = self._open_partial(header) if resume else None
        if self.file is None:
            if self.restarted:
                log.warning("%s: starting over: %s", self.partial, self.restarted)
            with self._checked("creating it"):
                self.file = self._create(self.partial, header, dtype, self.chunk_rows)
                self._sums = {name: crc(self.file[name][:]) for name in self._names()}
        # held open: a dataset handle dropped between writes flushes its chunk cache where no error can be raised
        self._datasets = {name: self.file[name] for name in self._names()}
        self.n_items = int(self.file.attrs["n_committed"])
        self.n_rows = int(self.file["offsets"][self.n_items])
        self.done_ids = set(self.file["ids"].asstr()[: self.n_items])

    def _names(self) -> list[str]:
        """The datasets this writer writes, in a fixed order."""
        return ["ids", *([INPUTS] if self.inputs is not None else []), "offsets", "data", *self.fields]

    @contextlib.contextmanager
    def _checked(self, doing: str) -> Iterator[None]:
        """A failure while ``doing`` something to the file breaks the writer and is raised as a one-line
        StoreError naming the partial file and the cause."""
        try:
            yield
        except StoreError:
            raise
        except Exception as err:
            raise self._fail(f"{self.partial}: {doing} failed: {one_line(err)}; nothing was sealed (the partial "
                             f"file is left for a resume): fix the cause and run again") from err

    def _fail(self, message: str) -> StoreError:
        """Break the writer: close its file now (left open, HDF5 closes it at exit and crashes on the failed writes)
        and let go of the lock; the error to raise."""
        self._broken = True
        self._close_quietly()
        self._unlock()
        return StoreError(message)

    def _create(self, path: Path, header: dict, dtype: str, chunk_rows: int) -> h5py.File:
        if path.exists():
            path.unlink()
        f = h5py.File(path, "w")
        try:
            self._lay_out(f, header, dtype, chunk_rows)
        except BaseException:
            with contextlib.suppress(Exception):
                f.close()
            raise
        return f

    def _lay_out(self, f: h5py.File, header: dict, dtype: str, chunk_rows: int) -> None:
        """The header and the empty datasets of a new file."""
        f.attrs.update(header)
        f.attrs["complete"] = False
        f.attrs["n_committed"] = 0
        # variable-length strings take no HDF5 filter: the seal's CRC-32 covers them
        f.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=_STR, chunks=(1024,))
        if self.inputs is not None:
            f.create_dataset(INPUTS, shape=(0,), maxshape=(None,), dtype=_STR, chunks=(1024,))
        f.create_dataset("offsets", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(1024,), fletcher32=True)
        f.create_dataset("data", shape=(0, self.dim), maxshape=(None, self.dim), dtype=dtype,
                         chunks=(chunk_rows, self.dim), fletcher32=True)
        for name, (tail, fdtype) in self.fields.items():
            checked = {} if fdtype == "str" else {"fletcher32": True}
            f.create_dataset(name, shape=(0, *tail), maxshape=(None, *tail), dtype=_STR if fdtype == "str" else fdtype,
                             chunks=(chunk_rows, *tail), **checked)

    def _open_partial(self, header: dict) -> h5py.File | None:
        """The partial file's committed items, copied into a fresh partial file; None (and ``restarted``
        set) when there is nothing to continue: no file, other settings, changed inputs or damage."""
        if not self.partial.exists():
            return None
        try:
            old = h5py.File(self.partial, "r")
        except OSError as err:  # killed mid-write: the partial file is unreadable, start over
            self.restarted = f"the partial file does not open ({one_line(err)})"
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
            self.restarted = f"its committed items do not read back ({type(err).__name__}: {one_line(err)})"
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
        """A fresh partial file holding ``old``'s committed items (numeric rows copied in blocks), in its place;
        they must match the checksums ``old`` recorded with them (a partial file from before has none)."""
        ids, offsets, fields, inputs = committed
        n, rows = len(ids), int(offsets[-1])
        fresh = self.partial.with_name(self.partial.name + ".resume")
        f = self._create(fresh, header, header["dtype"], self.chunk_rows)
        sums = {"ids": crc(ids), "offsets": crc(offsets)}
        try:
            f["ids"].resize((n,))
            f["ids"][:] = ids
            if inputs is not None:
                f[INPUTS].resize((n,))
                f[INPUTS][:] = inputs
                sums[INPUTS] = crc(inputs)
            f["offsets"].resize((n + 1,))
            f["offsets"][:] = offsets
            for name in ["data", *fields]:
                f[name].resize((rows, *f[name].shape[1:]))
                if fields.get(name) is not None:  # strings, read and checked already
                    f[name][:] = fields[name]
                    sums[name] = crc(fields[name])
                    continue
                sums[name], = _copy_rows(old[name], f[name], rows, at=0, sums=[0])
            f.attrs["n_committed"] = n
            f.attrs[CHECKSUMS] = json.dumps(sums, sort_keys=True)
        finally:
            f.close()
        recorded = json.loads(old.attrs.get(CHECKSUMS, "{}"))
        differ = sorted(name for name in recorded if sums.get(name) != recorded[name])
        if differ:
            fresh.unlink()
            raise StoreError(f"its committed {', '.join(differ)} do not match their checksums")
        os.replace(fresh, self.partial)
        self._sums = sums
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

    def _append(self, name: str, start: int, values: Any) -> None:
        """``values`` written to dataset ``name`` from row ``start`` (grown to fit), and counted in its checksum."""
        dataset = self._datasets[name]
        if dataset.dtype.kind != "O":
            values = np.ascontiguousarray(values, dtype=dataset.dtype)  # the bytes the file holds, for the CRC
        dataset.resize((start + len(values), *dataset.shape[1:]))
        dataset[start:] = values
        self._sums[name] = crc(values, self._sums[name])

    def _mark_committed(self) -> None:
        """Flush the rows, then record how many items they hold and their checksums."""
        self.file.flush()  # the rows reach the file before the count that says they are there
        self.file.attrs[CHECKSUMS] = json.dumps(self._sums, sort_keys=True)
        self.file.attrs["n_committed"] = self.n_items
        self.file.flush()

    def commit(self) -> None:
        """Write the buffered items, one resize and write per array (per-item writes cost more than a
        GPU forward), then mark them committed."""
        if self._broken:
            raise StoreError(f"{self.partial}: an earlier write failed; nothing more is written to it")
        with self._checked(f"writing {len(self._buffer)} item(s)"):
            if self._buffer:
                self._write_buffer()
            self._mark_committed()

    def _write_buffer(self) -> None:
        start_item = self.n_items - len(self._buffer)
        start_row = self.n_rows - sum(len(data) for _, data, _ in self._buffer)
        counts = np.array([len(data) for _, data, _ in self._buffer], np.int64)
        self._append("ids", start_item, [item_id for item_id, _, _ in self._buffer])
        if self.inputs is not None:
            self._append(INPUTS, start_item, [self.inputs.get(item_id, "") for item_id, _, _ in self._buffer])
        self._append("offsets", start_item + 1, start_row + np.cumsum(counts))
        if self.n_rows > start_row:
            self._append("data", start_row, np.concatenate([data for _, data, _ in self._buffer]))
            for name, (_, dtype) in self.fields.items():
                values = [fields[name] for _, _, fields in self._buffer]
                self._append(name, start_row, [v for part in values for v in part] if dtype == "str"
                             else np.concatenate(values))
        self._buffer = []

    def add_store(self, store: "RaggedStore") -> None:
        """Append every item of a finished ``store`` written with the same header (a shard of this one), its
        numeric rows copied in blocks; its items' input fingerprints come along (kept when ``inputs`` is given).
        Its rows must match the checksums it recorded (a store from before has none)."""
        self.commit()
        n, rows = len(store), int(store.offsets[-1])
        duplicated = self.done_ids.intersection(store.ids)
        if duplicated:
            raise StoreError(f"{store.path}: {len(duplicated)} item(s) are already in {self.path.name}, "
                             f"first {sorted(duplicated)[0]!r}")
        theirs = {}
        with self._checked(f"adding the {n} item(s) of {store.path}"):
            self._append("ids", self.n_items, store.ids)
            if self.inputs is not None:
                keys = list(store.file[INPUTS].asstr()[:]) if INPUTS in store.file else [""] * n
                self.inputs.update(zip(store.ids, keys))
                self._append(INPUTS, self.n_items, keys)
            self._append("offsets", self.n_items + 1, self.n_rows + store.offsets[1:])
            theirs = {"ids": crc(store.ids), "offsets": crc(store.offsets)}
            for name in ["data", *self.fields]:
                dataset = self._datasets[name]
                dataset.resize((self.n_rows + rows, *dataset.shape[1:]))
                theirs[name], self._sums[name] = _copy_rows(store.file[name], dataset, rows, at=self.n_rows,
                                                            sums=[0, self._sums[name]])
        recorded = json.loads(store.attrs.get(CHECKSUMS, "{}"))
        differ = sorted(name for name in theirs if name in recorded and theirs[name] != recorded[name])
        if differ:
            raise self._fail(f"{store.path}: its {', '.join(differ)} do not match their checksums; {DAMAGED}")
        self.n_items += n
        self.n_rows += rows
        self.done_ids.update(store.ids)
        with self._checked(f"adding the {n} item(s) of {store.path}"):
            self._mark_committed()

    def counts(self) -> np.ndarray:
        """Elements per item written so far, buffered ones included."""
        self.commit()
        return np.diff(self.file["offsets"][: self.n_items + 1])

    def close(self, **summary: Any) -> Path:
        """Seal the file (``summary`` goes into attrs as JSON) and rename it into place, once it reads back as
        written: the item count, the offsets and each dataset's CRC-32. Any failure leaves the partial file."""
        try:
            self.commit()
            with self._checked("sealing it"):
                if summary:
                    self.file.attrs["summary"] = json.dumps(summary, sort_keys=True, default=str)
                self.file.flush()  # a failure here leaves the file open, for _close_quietly to discard its writes
                file, self.file = self.file, None
                file.close()
            self._check_written()
            with self._checked("sealing it"):
                with h5py.File(self.partial, "r+") as f:
                    f.attrs["complete"] = True
                os.replace(self.partial, self.path)
        except BaseException:
            self._close_quietly()
            raise
        finally:
            self._unlock()
        return self.path

    def _check_written(self) -> None:
        """The closed partial file, read back, holds what was written: else a StoreError (nothing is sealed)."""
        with self._checked("reading it back"), h5py.File(self.partial, "r") as f:
            ids = list(f["ids"].asstr()[:])
            problem = offsets_problem(ids, f["offsets"][:], len(f["data"]))
            if problem is None and (len(ids) != self.n_items or int(f.attrs["n_committed"]) != self.n_items):
                problem = f"it holds {len(ids)} items, {self.n_items} were written"
            if problem is None:
                read = dataset_checksums(f, self._sums)
                differ = [name for name in self._sums if read[name] != self._sums[name]]
                problem = f"its {', '.join(differ)} do not read back as written (CRC-32)" if differ else None
        if problem:
            raise self._fail(f"{self.partial}: sealing check failed: {problem}; nothing was sealed (the disk or the "
                             f"file system lost writes): run again")

    def _close_quietly(self) -> None:
        """Close the file once, whatever fails: a file HDF5 failed to close must not be touched again (it crashes)."""
        file, self.file = self.file, None
        with contextlib.suppress(Exception):  # the failure was reported already
            if file is not None and file.id.valid:
                if self._broken:
                    self._discard_writes(file)
                file.close()

    @staticmethod
    def _discard_writes(file: h5py.File) -> None:
        """Point the broken file's descriptor at /dev/null. HDF5 closes a file only once its cached writes
        succeed, and a file it could not close crashes the interpreter at exit (SIGSEGV); the partial file keeps
        what reached it, which a resume checks."""
        descriptor = file.id.get_vfd_handle()
        null = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(null, descriptor)
        finally:
            os.close(null)

    def abort(self) -> None:
        """Leave the partial file (committed items only) for a later resume."""
        try:
            if self.file is not None and self.file.id.valid and not self._broken:
                self.commit()
        except StoreError as err:  # the caller is failing already: its error is the one to raise
            log.warning("%s", err)
        finally:
            self._close_quietly()
            self._unlock()

    def _unlock(self) -> None:
        if self._locked:
            self._locked = False
            release_lock(self.path)

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
        try:
            self.attrs = dict(self.file.attrs)
            self.ids = list(self.file["ids"].asstr()[:])
            self.offsets = self.file["offsets"][:]
            self._check_layout()
        except Exception as err:
            self.file.close()
            if isinstance(err, StoreError):
                raise
            raise StoreError(f"{self.path}: its ids or offsets do not read back ({one_line(err)}); {DAMAGED}") from err
        self.index = {item_id: i for i, item_id in enumerate(self.ids)}
        self.dim = int(self.attrs["dim"])

    def _check_layout(self) -> None:
        """Offsets that fit the ids and the rows, and every per-element field as long as ``data``."""
        n_rows = len(self.file["data"])
        problem = offsets_problem(self.ids, self.offsets, n_rows)
        short = [name for name in self.fields if len(self.file[name]) != n_rows]
        if problem is None and short:
            problem = f"field {short[0]!r} has {len(self.file[short[0]])} rows, data {n_rows}"
        if problem is not None:
            raise StoreError(f"{self.path}: {problem}; {DAMAGED}")

    def verify(self) -> None:
        """Read every dataset back against the CRC-32s recorded at sealing (a store from before has none); a
        StoreError names the first that differs."""
        recorded = json.loads(self.attrs.get(CHECKSUMS, "{}"))
        try:
            read = dataset_checksums(self.file, recorded)
        except OSError as err:
            raise StoreError(f"{self.path}: does not read back ({one_line(err)}); {DAMAGED}") from err
        differ = [name for name in recorded if read[name] != recorded[name]]
        if differ:
            raise StoreError(f"{self.path}: its {', '.join(differ)} do not match their checksums; {DAMAGED}")

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
            try:
                values = ds[rows]
            except OSError as err:
                raise StoreError(f"{self.path}: item {item_id!r}: {field} does not read back ({one_line(err)}); "
                                 f"{DAMAGED}") from err
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
