"""Resuming an interrupted extraction from the committed items of its partial store."""

from __future__ import annotations

import contextlib
import typing

from mmsets.store import RaggedWriter


@contextlib.contextmanager
def resumable(writer: RaggedWriter) -> typing.Iterator[None]:
    """On any failure, Ctrl-C included, keep the committed items in the partial file for a resume."""
    try:
        yield
    except BaseException:
        writer.abort()
        raise


def empty_done_ids(writer: RaggedWriter) -> set[str]:
    """Ids a resumed store already holds with zero elements (their skip reason must be counted again)."""
    counts = writer.counts()
    ids = writer.file["ids"].asstr()[: writer.n_items]
    return {item_id for item_id, k in zip(ids, counts) if k == 0}
