"""The tally of one extraction run: what it skipped and why, what failed, and the store summary it seals."""

from __future__ import annotations

import time
import typing
from collections import Counter
from typing import Any

from mmsets.extract.errors import ExtractError
from mmsets.store import RaggedWriter

if typing.TYPE_CHECKING:
    import torch

MAX_ERRORS = 50


class RunTally:
    """Counts what a run skipped and why, and writes the store summary (docs/formats.md, "Feature stores")."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.skipped: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()  # items not stored: a service failed on them (retried next run)
        self.errors: list[dict[str, str]] = []
        self.processed = 0
        self.start = time.perf_counter()

    def fail(self, item_id: str, reason: str, detail: str | None = None) -> None:
        """Count an item a service failed on; it is not stored, and ``finish`` then leaves the store partial."""
        self.failed[reason] += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"id": item_id, "reason": reason, "detail": detail or ""})

    def skip(self, item_id: str, reason: str, detail: str | None = None) -> None:
        """Count ``reason``; a ``detail`` marks it an error worth listing (a broken file, not an absent one)."""
        self.skipped[reason] += 1
        if detail is not None and len(self.errors) < MAX_ERRORS:
            self.errors.append({"id": item_id, "reason": reason, "detail": detail})

    def summary(self, writer: RaggedWriter) -> dict[str, Any]:
        seconds = time.perf_counter() - self.start
        counts = writer.counts()
        return {
            "items": int(writer.n_items),
            "with_elements": int((counts > 0).sum()),
            "elements": int(counts.sum()),
            "skipped": dict(sorted(self.skipped.items())),
            "errors": self.errors,
            "items_per_s": round(self.processed / seconds, 3) if seconds > 0 else None,
            "seconds": round(seconds, 3),
            "device": str(self.device),
            "resumed": int(writer.n_items - self.processed),
            **({"restarted": writer.restarted} if writer.restarted else {}),
        }

    def finish(self, writer: RaggedWriter, **extra: Any) -> dict[str, Any]:
        """Seal ``writer`` with the summary, the extractor's own keys ``extra`` last, and return it; with items
        a service failed on, leave the store partial (the rest kept) and raise an ExtractError instead."""
        if self.failed:
            writer.abort()
            failed = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.failed.items()))
            first = next((e for e in self.errors if e["reason"] in self.failed), {})
            raise ExtractError(f"{sum(self.failed.values())} item(s) failed ({failed}; first {first.get('id')!r}: "
                               f"{first.get('detail')}); they are not stored and the partial store keeps the other "
                               f"{writer.n_items}: run again to retry them")
        summary = {**self.summary(writer), **extra}
        writer.close(**summary)
        return summary
