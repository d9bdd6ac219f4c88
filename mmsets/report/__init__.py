"""One self-contained HTML report per dataset: experiments, feature importance, coverage, stores, examples.

    build_report("results/mmimdb/manifest.parquet", run_dirs, {"image": ".../image.h5"}, "results/mmimdb/report.html")

The file has no external references (figures are PNG data URIs, CSS is inline) so it opens offline;
all text is escaped by Jinja2 autoescaping because item text (plots, OCR) is untrusted input.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Mapping, Sequence

from mmsets import __version__
from mmsets.io import atomic_path
from mmsets.report import collect, figures, tables
from mmsets.report.html import render

__all__ = ["build_report", "report_context"]


def report_context(
    manifest_path: str | os.PathLike,
    run_dirs: Sequence[str | os.PathLike],
    feature_paths: Mapping[str, str | os.PathLike],
    title: str | None = None,
    n_examples: int = 5,
) -> dict:
    """Everything the template shows, as plain data (handy for tests and other front ends)."""
    manifest, manifest_problem = collect.load_manifest(manifest_path)
    ids = set(map(str, manifest.frame["id"])) if manifest is not None else None
    runs = tables.rank_runs([collect.load_run(d) for d in run_dirs])
    stores = [collect.load_store(name, path, ids) for name, path in feature_paths.items()]
    fi = tables.fi_table(runs)
    labels = collect.label_frequency(manifest) if manifest is not None else None
    dataset = manifest.dataset if manifest is not None and manifest.dataset else Path(manifest_path).parent.name
    return {
        "title": title or f"mmsets report: {dataset}",
        "dataset": dataset,
        "task": manifest.task if manifest is not None else None,
        "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "version": __version__,
        "runs": runs,
        "n_ok": sum(r["status"] == "ok" for r in runs),
        "pivot": tables.pivot(runs),
        "fi": fi,
        "manifest_problem": manifest_problem,
        "coverage": collect.coverage(manifest) if manifest is not None else None,
        "labels": labels,
        "stores": stores,
        "examples": tables.examples(runs, manifest, stores, n_examples),
        "max_chars": tables.MAX_CHARS,
        "figures": {
            "f1": figures.f1_bars(runs),
            "curves": figures.learning_curves(runs),
            "fi": figures.fi_stacked(fi),
            "labels": figures.label_bars(labels) if labels else None,
        },
    }


def build_report(
    manifest_path: str | os.PathLike,
    run_dirs: Sequence[str | os.PathLike],
    feature_paths: Mapping[str, str | os.PathLike],
    out_path: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Write the report to ``out_path`` (atomically) and return that path.

    Missing or broken inputs (a run without metrics, an interrupted store, no manifest) are shown
    in the report as such; they never stop it.
    """
    html = render(report_context(manifest_path, run_dirs, feature_paths, title))
    with atomic_path(out_path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return Path(out_path)
