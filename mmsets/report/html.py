"""Render the report context with Jinja2; autoescaping is always on because item text is untrusted."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from mmsets.report.tables import family_label
from mmsets.runs.record import number

TEMPLATES = Path(__file__).parent / "templates"
# Control characters (Unicode's Cc but tab and newline) and the bidirectional overrides, embeddings, isolates and
# marks: in an id or a label, U+202E shows "gpj.exe" as "exe.jpg" and a NUL hides what follows.
INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(value: Any) -> Any:
    """Text with its control and bidi characters shown as escapes (``\\u202e``); anything else as it is.
    Every ``{{ }}`` of the templates goes through it, so no id, label or item text reaches the page raw."""
    if not isinstance(value, str) or isinstance(value, markupsafe.Markup):  # a macro's output: made of finalized parts
        return value
    return INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


def pct(value: Any, digits: int = 2) -> str:
    """A score in [0, 1] as a percentage without the sign, as in the papers' tables."""
    value = number(value)
    return "–" if value is None else f"{100 * value:.{digits}f}"


def num(value: Any, digits: int = 1) -> str:
    """Counts as integers with thousands separators; anything fractional with ``digits`` decimals."""
    value = number(value)
    if value is None:
        return "–"
    return f"{int(value):,}" if value == int(value) and abs(value) < 1e15 else f"{value:,.{digits}f}"


def fixed(value: Any, digits: int = 2) -> str:
    value = number(value)
    return "–" if value is None else f"{value:,.{digits}f}"


def metric(value: Any, fmt: str = "pct") -> str:
    """A metric as its column shows it: pct (a [0, 1] score as a percentage), num (target units), fixed."""
    value = number(value)
    if value is None:
        return "–"
    if fmt == "pct":
        return f"{100 * value:.2f}"
    if fmt == "fixed":
        return f"{value:.3f}"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3f}" if abs(value) >= 1 else f"{value:.4g}"


def mstd(cell: Any, fmt: str = "pct") -> str:
    """``{"mean", "std"}`` as 'mean ± std' (the mean alone without a std)."""
    if not isinstance(cell, dict):
        return "–"
    text = metric(cell.get("mean"), fmt)
    return text if number(cell.get("std")) is None or text == "–" else f"{text} ± {metric(cell['std'], fmt)}"


def signed(value: Any, fmt: str = "pct") -> str:
    value = number(value)
    return "–" if value is None else ("+" if value >= 0 else "−") + metric(abs(value), fmt)


def threshold(value: Any) -> str:
    if number(value) is not None:
        return f"{number(value):.2f}"
    return "per class" if isinstance(value, list) else "–"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=visible,
    )
    env.filters.update(pct=pct, num=num, fixed=fixed, threshold=threshold, metric=metric, mstd=mstd, signed=signed,
                       family=family_label)
    return env


def render(context: dict) -> str:
    return environment().get_template("report.html.j2").render(**context)
