"""Report figures as SVG data URIs, so the HTML file stands alone and its figures stay sharp when zoomed.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot): no global state, no display
needed, and nothing leaks between figures. Their text is set at sizes that stay readable when a phone
shows a figure 600 pixels wide (the report's narrow layout), and is drawn as glyph outlines so that the
figure looks the same whatever fonts the reader has. Labels are data: matplotlib escapes what it writes
into the SVG, and an <img> never runs a script an SVG might hold.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mmsets.runs.record import number
from mmsets.report.scores import Metric

BLUE, ORANGE, GREY = "#4c72b0", "#dd8452", "#8c8c8c"
SMALL, TINY = 10, 9  # points: tick labels and bar values; legends and small panels' titles
# Deterministic output (no date, fixed ids) so that an unchanged report is an unchanged file.
_SVG = {"svg.fonttype": "path", "svg.hashsalt": "mmsets"}


def _plain(text: str, limit: int = 40) -> str:
    """Data shown as a tick label: '$' would start mathtext, long names would squeeze the plot."""
    text = str(text).replace("$", r"\$")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    with rc_context(_SVG):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _hbar_figure(n_bars: int) -> tuple[Figure, object]:
    fig = Figure(figsize=(8, 1.2 + 0.36 * n_bars))
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _scale(metric: Metric) -> float:
    return 100.0 if metric.fmt == "pct" else 1.0


def config_bars(configs: list[dict], main: Metric) -> str | None:
    """The main test metric per configuration (mean, ± std as error bars) in the report's order (best dev at the
    top), the best by dev in orange."""
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
    ax.bar_label(bars, fmt="%.2f" if main.fmt == "pct" else "%.4g", padding=3, fontsize=SMALL)
    ax.set_xlabel(f"test {main.title}, mean ± std (ordered by dev {main.label})")
    top = max(m + s for m, s in zip(means, stds))
    if main.fmt == "pct" and main.higher:
        ax.set_xlim(0, max(100.0, top * 1.1))
    elif top > 0:
        ax.set_xlim(0, top * 1.15)
    ax.tick_params(axis="y", labelsize=SMALL)
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
        ax.bar_label(bars, labels=[f"{w:.0f}" if w >= 6 else "" for w in widths], label_type="center", fontsize=SMALL)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(range(len(rows)), names)
    ax.set_xlim(0, max(100.0, max(left)))
    ax.set_xlabel(f"mean {_plain(group['label'])} (%)")
    ax.tick_params(axis="y", labelsize=SMALL)
    ax.legend(ncols=min(5, len(modalities)), fontsize=SMALL, loc="lower center", bbox_to_anchor=(0.5, 1.0),
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
    ax.bar_label(bars, padding=3, fontsize=SMALL)
    ax.set_xlabel("items")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(axis="y", labelsize=SMALL)
    return to_data_uri(fig)


def learning_curves(runs: list[dict], configs: list[dict], main: Metric, limit: int = 8) -> str | None:
    """Per configuration (the ``limit`` best that kept a history; fitted models have none), the mean over
    its seeds of the dev main metric (left) and of the training loss (right) per epoch."""
    key = f"dev_{main.key}"
    by_config: dict[str, list[dict]] = {}
    for run in runs:
        if run["status"] == "ok" and any(key in h for h in run["history"]):
            by_config.setdefault(run["config"], []).append(run)
    chosen = [c for c in configs if c["name"] in by_config][:limit]
    if not chosen:
        return None
    scale = _scale(main)
    fig = Figure(figsize=(8, 3.4))
    dev_ax, loss_ax = fig.subplots(1, 2)
    for ax in (dev_ax, loss_ax):
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    palette = _palette(len(chosen))
    for color, config in zip(palette, chosen):
        for ax, field, factor in ((dev_ax, key, scale), (loss_ax, "train_loss", 1.0)):
            epochs, means = _mean_curve(by_config[config["name"]], field)
            if epochs:
                ax.plot(epochs, [factor * m for m in means], marker=".", color=color,
                        label=_plain(f"{config['name']} (n={len(by_config[config['name']])})", 34))
    dev_ax.set_ylabel(f"dev {main.title}")
    loss_ax.set_ylabel("training loss")
    handles, names = (dev_ax if dev_ax.lines else loss_ax).get_legend_handles_labels()
    # Below the panels rather than beside them: the figure keeps the width a phone shows it at.
    fig.legend(handles, names, fontsize=TINY, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncols=2, frameon=False)
    return to_data_uri(fig)


def _mean_curve(runs: list[dict], field: str) -> tuple[list[int], list[float]]:
    """Epochs every run reached and the mean of ``field`` over the runs at each."""
    values: dict[int, list[float]] = {}
    for run in runs:
        for h in run["history"]:
            epoch, value = number(h.get("epoch")), number(h.get(field))
            if epoch is not None and value is not None:
                values.setdefault(int(epoch), []).append(value)
    epochs = sorted(e for e, v in values.items() if len(v) == len(runs))
    return epochs, [sum(values[e]) / len(values[e]) for e in epochs]


def _thinned(x, y, limit: int = 300):
    """At most ``limit`` points of a curve, its ends kept: a vector figure of every threshold would be large."""
    if len(x) <= limit:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, limit).round().astype(int))
    return x[keep], y[keep]


def pr_curves(table: dict | None, label_names: list[str]) -> str | None:
    """Precision-recall curves: micro-averaged for each configuration of the per-label table (its seeds
    pooled), and per label for the first (the best) configuration."""
    from mmsets.report.labels import pr_curve_points

    if not table:
        return None
    n_labels = len(label_names)
    cols = 4
    rows = 1 + (n_labels + cols - 1) // cols if n_labels > 1 else 1
    fig = Figure(figsize=(8, 3.2 + 2.0 * (rows - 1)))
    grid = fig.add_gridspec(rows, cols, height_ratios=[3.2] + [2.0] * (rows - 1))
    main_ax = fig.add_subplot(grid[0, :2])
    palette = _palette(len(table["configs"]))
    for color, config in zip(palette, table["configs"]):
        points = pr_curve_points(*table["pooled"][config["name"]])
        if points is not None:
            recall, precision, ap = points
            main_ax.plot(*_thinned(recall, precision), color=color,
                         label=_plain(f"{config['name']} (AP {100 * ap:.1f})", 46))
    main_ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="micro-averaged")
    main_ax.legend(fontsize=TINY, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    if rows > 1:
        truth, probs = table["pooled"][table["configs"][0]["name"]]
        for k, name in enumerate(label_names):
            ax = fig.add_subplot(grid[1 + k // cols, k % cols])
            points = pr_curve_points(truth[:, k:k + 1], probs[:, k:k + 1])
            if points is not None:
                ax.plot(*_thinned(points[0], points[1]), color=BLUE)
                ax.set_title(_plain(f"{name} (AP {100 * points[2]:.0f})", 24), fontsize=SMALL)
            else:
                ax.set_title(_plain(f"{name} (no positives)", 24), fontsize=SMALL)
            ax.set(xlim=(0, 1), ylim=(0, 1.02))
            ax.tick_params(labelsize=TINY)
    fig.subplots_adjust(hspace=0.7, wspace=0.35)
    return to_data_uri(fig)
