"""Values named in a message: the first few and how many more, so that a wrong setting (a label column holding
an id per row, a table of thousands of columns) gives one readable line, not every value it found."""

from __future__ import annotations

from typing import Any, Iterable

SHOWN = 8  # values named before "... and N more"
WIDTH = 60  # characters of one value before it is cut


def listed(values: Iterable[Any], limit: int = SHOWN, width: int = WIDTH, quote: bool = True) -> str:
    """``values`` as "'a', 'b', 'c' … and 997 more" (strings quoted unless not ``quote``, each cut to ``width``
    characters)."""
    values = list(values)
    shown = [_one(v, width, quote) for v in values[:limit]]
    rest = len(values) - len(shown)
    return ", ".join(shown) + (f" … and {rest} more" if rest > 0 else "") if values else "none"


def _one(value: Any, width: int, quote: bool) -> str:
    text = repr(value) if quote and isinstance(value, str) else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"
