"""One self-contained HTML report per dataset: results over seeds, model families, DM2S2 ablations,
feature importance, dataset coverage, feature stores, examples.

    build_report("results/mmimdb/manifest.parquet", run_dirs, {"image": ".../image.h5"}, "results/mmimdb/report.html",
                 csv_path="results/mmimdb/results.csv")

The file has no external references (figures are SVG data URIs, CSS is inline) so it opens offline; its only
links are relative ones to the run folders and logs beside it. All text is escaped by Jinja2 autoescaping
because item text (plots, OCR) is untrusted input.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Mapping, Sequence

from mmsets import __version__
from mmsets.io import atomic_path
from mmsets.report import collect, details, export, figures, importance, labels as per_label, robustness, tables, tuning
from mmsets.report.examples import MAX_CHARS, examples
from mmsets.report.html import render
from mmsets.report.scores import columns, main_metric, task_of

__all__ = ["build_report", "report_context"]


def report_context(
    manifest_path: str | os.PathLike,
    run_dirs: Sequence[str | os.PathLike],
    feature_paths: Mapping[str, str | os.PathLike],
    title: str | None = None,
    n_examples: int = 5,
    search_paths: Sequence[str | os.PathLike] | None = None,
    out_dir: str | os.PathLike | None = None,
) -> dict:
    """Everything the template shows, as plain data (handy for tests and other front ends). ``search_paths``:
    the tuning searches' JSON files (default: those under the manifest's folder, tune/*.json); ``out_dir``: the
    report's folder, which the links to run folders and logs are relative to (default: the manifest's)."""
    manifest, manifest_problem = collect.load_manifest(manifest_path)
    ids = set(map(str, manifest.frame["id"])) if manifest is not None else None
    runs = [collect.load_run(d, manifest.task if manifest is not None else None) for d in run_dirs]
    task = task_of(manifest.task if manifest is not None else None, runs)
    for run in runs:
        if run["status"] == "ok" and run["task"] != task:
            run["problems"].append(f"run task {run['task']} differs from the report's {task}")
    main = main_metric(task)
    runs = tables.rank_runs(runs, main)
    configs = tables.configurations(runs, main)
    stores = [collect.load_store(name, path, ids) for name, path in feature_paths.items()]
    fi = importance.importance_tables(runs, configs)
    ablations = tables.ablations(configs, main)
    inter = importance.inter_attention(fi, [r["name"] for r in ablations["rows"]] if ablations else None)
    labels = collect.label_frequency(manifest) if manifest is not None else None
    families = tables.family_best(configs, main)
    label_names = list(manifest.label_names) if manifest is not None else []
    label_table = per_label.per_label(configs, families, runs, label_names, task)
    dataset = manifest.dataset if manifest is not None and manifest.dataset else Path(manifest_path).parent.name
    example_items = examples(runs, manifest, stores, task, n_examples)
    feature_map = {name: str(path) for name, path in feature_paths.items()}
    for run in runs:
        run["details"] = details.run_details(run, manifest, task, out_dir or Path(manifest_path).parent)
    if example_items is not None and example_items["fi_kind"]:
        example_items["fi_kind"] = importance.kind_label(example_items["fi_kind"])
    return {
        "title": title or f"mmsets report: {dataset}",
        "dataset": dataset,
        "task": task,
        "main": main,
        "metrics": columns(task, runs),
        "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "version": __version__,
        "runs": runs,
        "n_ok": sum(r["status"] == "ok" for r in runs),
        "configs": configs,
        "per_class": tables.per_class_classes(configs),
        "per_fine_class": tables.per_class_classes(configs, "per_fine_class"),
        "families": families,
        "per_label": label_table,
        "ablations": ablations,
        "fi": fi,
        "inter": inter,
        "fi_matrix": importance.item_matrix(runs, manifest, task),
        "intra_maps": importance.intra_maps(runs, feature_map),
        "ocr": tables.ocr_comparison(configs, stores, main),
        "erasure": tables.erasure_table(runs, configs, main),
        "robustness": robustness.robustness_table(runs, configs, main),
        "tuning": tuning.tuning_tables(tuning.search_paths(manifest_path) if search_paths is None else search_paths,
                                       configs, main),
        "manifest_problem": manifest_problem,
        "coverage": collect.coverage(manifest) if manifest is not None else None,
        "labels": labels,
        "stores": stores,
        "examples": example_items,
        "max_chars": MAX_CHARS,
        "figures": {
            "configs": figures.config_bars(configs, main),
            "curves": figures.learning_curves(runs, configs, main),
            "pr": figures.pr_curves(label_table, label_names),
            "fi": {g["kind"]: figures.stacked_shares(g) for g in fi["groups"] if g["kind"] != "inter_attention"},
            "inter": figures.stacked_shares(inter) if inter else None,
            "labels": figures.label_bars(labels) if labels else None,
        },
    }


def build_report(
    manifest_path: str | os.PathLike,
    run_dirs: Sequence[str | os.PathLike],
    feature_paths: Mapping[str, str | os.PathLike],
    out_path: str | os.PathLike,
    title: str | None = None,
    csv_path: str | os.PathLike | None = None,
) -> Path:
    """Write the report to ``out_path`` and, given ``csv_path``, its results table there (each atomically);
    return the report's path.

    Missing or broken inputs (a run without metrics, an interrupted store, no manifest) are shown
    in the report as such; they never stop it.
    """
    context = report_context(manifest_path, run_dirs, feature_paths, title, out_dir=Path(out_path).parent)
    html = render(context)
    if csv_path is not None:
        export.write_results_csv(context, csv_path)
    with atomic_path(out_path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return Path(out_path)
