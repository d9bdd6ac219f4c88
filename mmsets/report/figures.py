"""Report figures as PNG data URIs, so the HTML file stands alone.

Figures are built with ``matplotlib.figure.Figure`` directly (Agg canvas, no pyplot): no global
state, no display needed, and nothing leaks between figures.
"""

from __future__ import annotations

import base64
import io

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

BLUE, ORANGE, GREY = "#4c72b0", "#dd8452", "#8c8c8c"


def _plain(text: str, limit: int = 40) -> str:
    """Data shown as a tick label: '$' would start mathtext, long names would squeeze the plot."""
    text = str(text).replace("$", r"\$")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _hbar_figure(n_bars: int) -> tuple[Figure, object]:
    fig = Figure(figsize=(8, 1.2 + 0.32 * n_bars))
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def f1_bars(runs: list[dict]) -> str | None:
    """Test F1-micro per finished run, best in orange, best at the top."""
    runs = [r for r in runs if r["status"] == "ok" and r["test"]["f1_micro"] is not None]
    if not runs:
        return None
    runs = sorted(runs, key=lambda r: r["test"]["f1_micro"])
    scores = [100 * r["test"]["f1_micro"] for r in runs]
    fig, ax = _hbar_figure(len(runs))
    # Positions, not names, on the y axis: two runs may share a name and must not share a bar.
    bars = ax.barh(range(len(runs)), scores, color=[ORANGE if r["best"] else BLUE for r in runs])
    ax.set_yticks(range(len(runs)), [_plain(r["name"]) for r in runs])
    ax.bar_label(bars, fmt="%.2f", padding=3, fontsize=8)
    ax.set_xlabel("test F1-micro (%)")
    ax.set_xlim(0, max(100.0, max(scores) * 1.1))
    ax.tick_params(axis="y", labelsize=8)
    return to_data_uri(fig)


def fi_stacked(fi: dict) -> str | None:
    """Mean FI share per modality, one stacked horizontal bar per run that has FI."""
    rows = [r for r in fi["rows"] if r["shares"]]
    if not rows or not fi["modalities"]:
        return None
    fig, ax = _hbar_figure(len(rows) + 1)
    names = [_plain(r["run"]) for r in rows][::-1]
    left = [0.0] * len(rows)
    palette = _palette(len(fi["modalities"]))
    for j, modality in enumerate(fi["modalities"]):
        widths = [100 * (r["shares"][j] or 0.0) for r in rows][::-1]
        bars = ax.barh(range(len(rows)), widths, left=left, color=palette[j], label=_plain(modality, 24))
        ax.bar_label(bars, labels=[f"{w:.0f}" if w >= 6 else "" for w in widths], label_type="center", fontsize=8)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(range(len(rows)), names)
    ax.set_xlim(0, 100)
    ax.set_xlabel("mean feature-importance share (%)")
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(ncols=min(5, len(fi["modalities"])), fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0),
              frameon=False)
    return to_data_uri(fig)


def _palette(n: int) -> list:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def label_bars(freq: dict) -> str | None:
    """Items per label (all splits), most frequent at the top."""
    rows = freq["rows"]
    if not rows:
        return None
    rows = rows[::-1]
    fig, ax = _hbar_figure(len(rows))
    bars = ax.barh([_plain(r["label"]) for r in rows], [r["total"] for r in rows], color=BLUE)
    ax.bar_label(bars, padding=3, fontsize=8)
    ax.set_xlabel("items")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(axis="y", labelsize=8)
    return to_data_uri(fig)


def learning_curves(runs: list[dict], limit: int = 10) -> str | None:
    """Dev F1-micro per epoch for the ``limit`` best runs that kept a history."""
    runs = [r for r in runs if r["status"] == "ok" and any("dev_f1_micro" in h for h in r["history"])][:limit]
    if not runs:
        return None
    fig = Figure(figsize=(8, 3.6))
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    for run in runs:
        points = [(h.get("epoch"), h.get("dev_f1_micro")) for h in run["history"]]
        points = [(e, 100 * f) for e, f in points if isinstance(e, (int, float)) and isinstance(f, (int, float))]
        if points:
            ax.plot(*zip(*points), marker=".", label=_plain(run["name"], 30))
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev F1-micro (%)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return to_data_uri(fig)
