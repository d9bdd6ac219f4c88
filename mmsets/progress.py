"""Progress of a long loop, for a person at a terminal and for a log file alike.

On an interactive terminal it is a tqdm bar (rate and ETA). Anywhere else (a job's log under Snakemake, a
pipe) a bar would be one line of carriage returns, so it is a plain log line now and then instead: every
``LINE_EVERY`` of the total and at the end, with the count, the rate and the ETA.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Any, Iterator, TextIO

log = logging.getLogger("mmsets.progress")

LINE_EVERY = 0.1  # a log line per tenth of the total
LINE_SECONDS = 60.0  # and at least one a minute on a slow loop


def interactive(stream: TextIO | None = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a file
        return False


def duration(seconds: float | None) -> str:
    """``h:mm:ss`` (``m:ss`` under an hour); ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class LineProgress:
    """tqdm's ``update``/``close`` as log lines: ``desc: n/total (p%), r unit/s, elapsed, ETA``."""

    def __init__(self, total: int | None, desc: str, unit: str = "item", initial: int = 0,
                 clock: Any = time.monotonic, divisor: int = 1) -> None:
        self.total, self.desc, self.unit, self.n, self._clock = total, desc, unit, initial, clock
        self._divisor = divisor  # shown in units of divisor (bytes as MiB)
        self._start = clock()
        self._initial = initial
        self._last_n, self._last_t = initial, self._start
        self._step = max(1, int((total or 0) * LINE_EVERY))
        self._closed = False
        self.postfix = ""

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def line(self) -> str:
        elapsed = self._clock() - self._start
        done = (self.n - self._initial) / self._divisor
        rate = done / elapsed if elapsed > 0 else None
        n, total = self.n / self._divisor, None if self.total is None else self.total / self._divisor
        count = f"{n:.4g}/{total:.4g}" if total is not None else f"{n:.4g}"
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        eta = (total - n) / rate if rate and total is not None else None
        speed = f"{rate:.3g} {self.unit}/s" if rate is not None else f"? {self.unit}/s"
        return (f"{self.desc}: {count}{share}, {speed}, elapsed {duration(elapsed)}, ETA {duration(eta)}"
                + (f", {self.postfix}" if self.postfix else ""))

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._clock()
        if self.n - self._last_n >= self._step or now - self._last_t >= LINE_SECONDS:
            self._emit(now)

    def _emit(self, now: float) -> None:
        log.info("%s", self.line())
        self._last_n, self._last_t = self.n, now

    def close(self) -> None:
        if not self._closed and self.n != self._last_n:
            self._emit(self._clock())
        self._closed = True


class _Silent:
    n = 0

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values: Any) -> None:
        return None

    def close(self) -> None:
        return None


def progress(total: int | None, desc: str, unit: str = "item", enabled: bool = True, initial: int = 0,
             stream: TextIO | None = None, **bar: Any) -> Any:
    """A tqdm bar on an interactive ``stream`` (default stderr), log lines elsewhere, nothing when not
    ``enabled``; ``bar``: tqdm's own display settings (``unit_scale``...), used by the bar only."""
    if not enabled:
        return _Silent()
    if interactive(stream):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=stream or sys.stderr, **bar)
    if unit == "B":
        return LineProgress(total, desc, "MiB", initial, divisor=2**20)
    return LineProgress(total, desc, unit, initial)


@contextlib.contextmanager
def logs_beside_bars(stream: TextIO | None = None) -> Iterator[None]:
    """On an interactive terminal, log lines printed while a bar is shown go above it instead of through it."""
    if not interactive(stream):
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        yield


def quiet_library_bars(stream: TextIO | None = None) -> None:
    """Away from a terminal, the bars of the libraries we load (transformers' "Loading weights", the Hugging
    Face hub's) stay off too: they would be carriage-return lines in the job's log. Set before they are imported."""
    if not interactive(stream):
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
