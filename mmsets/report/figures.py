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

from mmsets.runs.record import number
from mmsets.report.scores import Metric

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


def _scale(metric: Metric) -> float:
    return 100.0 if metric.fmt == "pct" else 1.0


def config_bars(configs: list[dict], main: Metric) -> str | None:
    """The main test metric per configuration (mean, ± std as error bars), best in orange, best at the top."""
    rows = [c for c in configs if c["test"].get(main.key, {}).get("mean") is not None][::-1]
    if not rows:
        return None
    scale = _scale(main)
    means = [scale * c["test"][main.key]["mean"] for c in rows]
    stds = [scale * (c["test"][main.key]["std"] or 0.0) for c in rows]
    fig, ax = _hbar_figure(len(rows))
    # Positions, not names, on the y axis: two configurations may share a label and must not share a bar.
    bars = ax.barh(range(len(rows)), means, xerr=stds, color=[ORANGE if c["best"] else BLUE for c in rows],
                   error_kw={"ecolor": GREY, "capsize": 2, "lw": 1})
    ax.set_yticks(range(len(rows)), [_plain(f"{c['name']} (n={c['n_folds'] or c['n']})") for c in rows])
    ax.bar_label(bars, fmt="%.2f" if main.fmt == "pct" else "%.4g", padding=3, fontsize=8)
    ax.set_xlabel(f"test {main.title}, mean ± std")
    top = max(m + s for m, s in zip(means, stds))
    if main.fmt == "pct" and main.higher:
        ax.set_xlim(0, max(100.0, top * 1.1))
    elif top > 0:
        ax.set_xlim(0, top * 1.15)
    ax.tick_params(axis="y", labelsize=8)
    return to_data_uri(fig)


def stacked_shares(group: dict) -> str | None:
    """One stacked horizontal bar of mean shares per modality for each configuration of a kind group."""
    rows = [r for r in group["rows"] if any(s["mean"] is not None for s in r["shares"])]
    modalities = group["modalities"]
    if not rows or not modalities:
        return None
    fig, ax = _hbar_figure(len(rows) + 1)
    names = [_plain(r["config"]) for r in rows][::-1]
    left = [0.0] * len(rows)
    palette = _palette(len(modalities))
    for j, modality in enumerate(modalities):
        widths = [100 * (r["shares"][j]["mean"] or 0.0) for r in rows][::-1]
        bars = ax.barh(range(len(rows)), widths, left=left, color=palette[j], label=_plain(modality, 24))
        ax.bar_label(bars, labels=[f"{w:.0f}" if w >= 6 else "" for w in widths], label_type="center", fontsize=8)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(range(len(rows)), names)
    ax.set_xlim(0, max(100.0, max(left)))
    ax.set_xlabel(f"mean {_plain(group['label'])} (%)")
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(ncols=min(5, len(modalities)), fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0),
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


def learning_curves(runs: list[dict], main: Metric, limit: int = 10) -> str | None:
    """The dev main metric per epoch for the ``limit`` best runs that kept a history (fitted models have none)."""
    key = f"dev_{main.key}"
    runs = [r for r in runs if r["status"] == "ok" and any(key in h for h in r["history"])][:limit]
    if not runs:
        return None
    scale = _scale(main)
    fig = Figure(figsize=(8, 3.6))
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    for run in runs:
        points = [(h.get("epoch"), h.get(key)) for h in run["history"]]
        points = [(e, scale * v) for e, v in points if number(e) is not None and number(v) is not None]
        if points:
            ax.plot(*zip(*points), marker=".", label=_plain(run["name"], 30))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"dev {main.title}")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return to_data_uri(fig)
