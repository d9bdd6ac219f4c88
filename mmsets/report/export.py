"""The report's results as a table for other tools: results/{dataset}/results.csv, one row per run and one per
configuration (``kind``), columns in docs/formats.md.

Scores are written as numbers, as metrics.json holds them (a [0, 1] score is a fraction, not a percentage).
Text comes from run names, labels and configuration files, so a cell that a spreadsheet would read as a
formula (=, +, -, @, a tab or a carriage return first) is written with a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from mmsets.io import atomic_path
from mmsets.runs.record import number

IDENTITY = ("kind", "dataset", "group", "configuration", "run", "model", "features", "pooling", "variant", "seed",
            "status", "n_seeds", "n_folds", "best_by_dev")
SPLITS = ("dev", "test")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def header(metric_keys: list[str]) -> list[str]:
    return list(IDENTITY) + [f"{split}_{key}{suffix}" for split in SPLITS for key in metric_keys
                             for suffix in ("", "_std")]


def safe_text(value: Any) -> Any:
    """Numbers stay numbers; text that would start a spreadsheet formula gets a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if number(value) is not None:
        return value
    text = str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def _scores(mean: dict, std: dict, metric_keys: list[str]) -> dict:
    out = {}
    for split in SPLITS:
        for key in metric_keys:
            out[f"{split}_{key}"] = number((mean.get(split) or {}).get(key))
            out[f"{split}_{key}_std"] = number((std.get(split) or {}).get(key))
    return out


def run_rows(context: dict, metric_keys: list[str]) -> list[dict]:
    rows = []
    for run in context["runs"]:
        folds = run["cv"] is not None
        rows.append({
            "kind": "run", "dataset": context["dataset"], "group": run["group"], "configuration": run["config"],
            "run": run["name"], "model": run["model"], "features": " + ".join(run["features"]),
            "pooling": run["pooling"], "variant": run["variant"], "seed": run["seed"], "status": run["status"],
            "n_seeds": 1 if run["status"] == "ok" else 0,
            "n_folds": number((run["cv"] or {}).get("folds")) if folds else None, "best_by_dev": run["best"],
            **_scores({"dev": run["dev"], "test": run["test"]},
                      {"dev": run["dev_std"], "test": run["test_std"]} if folds else {}, metric_keys),
        })
    return rows


def configuration_rows(context: dict, metric_keys: list[str]) -> list[dict]:
    groups = {r["config"]: r["group"] for r in reversed(context["runs"])}
    rows = []
    for config in context["configs"]:
        mean = {s: {k: (c or {}).get("mean") for k, c in config[f"{s}_scores"].items()} for s in SPLITS}
        std = {s: {k: (c or {}).get("std") for k, c in config[f"{s}_scores"].items()} for s in SPLITS}
        rows.append({
            "kind": "configuration", "dataset": context["dataset"], "group": groups.get(config["name"]),
            "configuration": config["name"], "run": None, "model": config["model"], "features": config["features"],
            "pooling": config["pooling"], "variant": config["variant"], "seed": None,
            "status": "ok" if config["n"] else "failed", "n_seeds": config["n"], "n_folds": config["n_folds"],
            "best_by_dev": config["best"], **_scores(mean, std, metric_keys),
        })
    return rows


def results_csv(context: dict) -> str:
    """The CSV text of a report context (mmsets.report.report_context): configurations first, best by dev
    first, then every run in the report's order."""
    keys = list(dict.fromkeys([context["main"].key] + [m.key for m in context["metrics"]]))
    columns = header(keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in configuration_rows(context, keys) + run_rows(context, keys):
        writer.writerow({c: safe_text(row.get(c)) for c in columns})
    return buf.getvalue()


def write_results_csv(context: dict, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(results_csv(context), encoding="utf-8")
    return Path(path)
