"""What each run's collapsible section shows: its settings, links to its folder and logs, the items of each
split (per class for classification), its test confusion matrix (binary and multi-class) and its provenance.

Links are relative to the report's folder, so a results tree that moves as a whole keeps them working.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from mmsets.data.manifest import SPLITS, Manifest
from mmsets.report.collect import redact
from mmsets.report.examples import decided_classes, output_columns
from mmsets.runs.record import number

SINGLE_LABEL = ("binary", "multiclass")
# The jobs whose logs belong to a run, as the workflow names them (workflow/rules/*.smk: logs/<job>/<run>.log).
RUN_JOBS = ("train", "ensemble", "robustness", "erasure")
PROVENANCE_ORDER = ("mmsets", "git_commit", "git_dirty", "python", "platform", "cpu", "cpu_count", "memory_gb",
                    "device", "gpu", "created")
MAX_TEXT = 200


def run_details(run: dict, manifest: Manifest | None, task: str, out_dir: str | os.PathLike) -> dict:
    """{links, settings, splits, confusion, provenance} of one run; a part it cannot say is empty or None."""
    preds = _predictions(run)
    label_names = _label_names(preds, manifest, task)
    return {
        "links": links(run, out_dir),
        "settings": settings(run),
        "splits": split_summary(run, preds, manifest, task, label_names),
        "confusion": confusion(run, preds, task, label_names),
        "provenance": provenance(run["provenance"]),
    }


def _predictions(run: dict) -> pd.DataFrame | None:
    if run["status"] != "ok" or not run["predictions"]:
        return None
    try:
        preds = pd.read_parquet(run["predictions"])
    except Exception:  # already noted on the run by the examples and per-label tables
        return None
    return preds if "split" in preds.columns else None


def _label_names(preds: pd.DataFrame | None, manifest: Manifest | None, task: str) -> list[str]:
    if task == "regression":
        return []
    names = list(manifest.label_names) if manifest is not None else []
    return names or (output_columns(preds, None) if preds is not None else [])


# --------------------------------------------------------------------------- links

def _href(path: Path, out_dir: Path, folder: bool = False) -> str:
    rel = os.path.relpath(path, out_dir).replace(os.sep, "/")
    return quote(rel) + ("/" if folder else "")


def links(run: dict, out_dir: str | os.PathLike) -> list[dict]:
    """The run's folder and the logs its jobs left (results/{dataset}/logs/<job>/<run>.log), relative links."""
    run_dir = Path(run["dir"]).absolute()
    out_dir = Path(out_dir).absolute()
    if not run_dir.is_dir():
        return []
    out = [{"label": "run folder", "href": _href(run_dir, out_dir, folder=True)}]
    logs = run_dir.parent.parent / "logs"
    for job in RUN_JOBS:
        log = logs / job / f"{run_dir.name}.log"
        if log.is_file():
            out.append({"label": f"{job} log", "href": _href(log, out_dir)})
    return out


# --------------------------------------------------------------------------- settings

def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"


def settings(run: dict) -> list[dict]:
    """Titled (key, text) lists: who the run is, its model_config, its training, the decision chosen on dev
    (a k-fold run: one per fold) and the settings of each store it read; values of secret-looking keys hidden."""
    who = [("features", " + ".join(run["features"]) or "–"), ("seed", _text(run["seed"])),
           ("group", run["group"] or "–"), ("variant", run["variant"] or "–")]
    out = [{"title": "run", "items": who}]
    for title, raw in (("model_config", run["model_config"]), ("training", run["training"])):
        if raw:
            out.append({"title": title, "items": redact(raw)})
    if run["cv"] is not None:
        folds = {f"fold {k}": d for k, d in enumerate(run["decisions"]) if isinstance(d, dict)}
        if folds:
            out.append({"title": "decision (per fold)", "items": [(k, _text(v)) for k, v in folds.items()]})
    elif isinstance(run["decision"], dict):
        out.append({"title": "decision", "items": redact(run["decision"])})
    for name, made in sorted(run.get("stores", {}).items()):
        if isinstance(made, dict) and isinstance(made.get("params"), dict):
            out.append({"title": f"store {name} ({made.get('extractor') or name})", "items": redact(made["params"])})
    return out


# --------------------------------------------------------------------------- splits and confusion matrix

def _class_counts(labels: pd.Series, names: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(names, 0)
    for item in labels:
        for label in set(map(str, item if item is not None else [])):
            counts[label] = counts.get(label, 0) + 1
    return counts


def split_summary(run: dict, preds: pd.DataFrame | None, manifest: Manifest | None, task: str,
                  label_names: list[str]) -> dict | None:
    """Items per split (metrics.json's n_items, else counted) and, for classification, items per class: train
    from the manifest (a k-fold run's train differs per fold: not shown), dev and test from the run's outputs."""
    frames: dict[str, pd.DataFrame] = {}
    if manifest is not None and run["cv"] is None:
        frames["train"] = manifest.frame[manifest.frame["split"] == "train"]
    if preds is not None:
        frames.update({s: preds[preds["split"] == s] for s in ("dev", "test")})
    recorded = run["n_items"] if isinstance(run["n_items"], dict) else {}
    splits = [s for s in SPLITS if s in frames or number(recorded.get(s)) is not None]
    if not splits:
        return None
    items = [number(recorded.get(s)) if number(recorded.get(s)) is not None
             else (len(frames[s]) if s in frames else None) for s in splits]
    rows = []
    if task != "regression":
        counts = {s: _class_counts(f["labels"], label_names) for s, f in frames.items() if "labels" in f.columns}
        names = list(label_names) + sorted({c for per in counts.values() for c in per} - set(label_names))
        rows = [{"label": n, "counts": [counts[s].get(n, 0) if s in counts else None for s in splits]}
                for n in names]
    return {"splits": splits, "items": items, "rows": rows}


def confusion(run: dict, preds: pd.DataFrame | None, task: str, label_names: list[str]) -> dict | None:
    """Test items by true class (rows) and the class the run's dev-chosen decision predicts (columns)."""
    if task not in SINGLE_LABEL or preds is None or not label_names or "labels" not in preds.columns:
        return None
    test = preds[preds["split"] == "test"]
    if test.empty or not set(label_names) <= set(test.columns):
        return None
    index = {name: k for k, name in enumerate(label_names)}
    truth = np.array([next((index[str(t)] for t in (labels if labels is not None else []) if str(t) in index), -1)
                      for labels in test["labels"]])
    decided = decided_classes(test, run, label_names)
    known = truth >= 0
    matrix = np.zeros((len(label_names), len(label_names)), np.int64)
    np.add.at(matrix, (truth[known], decided[known]), 1)
    return {"labels": label_names, "rows": matrix.tolist(), "n": int(known.sum()),
            "n_unlabelled": int((~known).sum())}


# --------------------------------------------------------------------------- provenance

def provenance(raw: Any) -> dict | None:
    """metrics.json's ``provenance`` as (key, text) in a fixed order and its packages as (name, version)."""
    if not isinstance(raw, dict) or not raw:
        return None
    keys = [k for k in PROVENANCE_ORDER if k in raw] + sorted(str(k) for k in raw
                                                              if k not in PROVENANCE_ORDER and k != "packages")
    fields = [(k, "–" if raw.get(k) is None else _text(raw.get(k))) for k in keys]
    packages = raw.get("packages")
    packages = sorted((str(k), _text(v)) for k, v in packages.items()) if isinstance(packages, dict) else []
    return {"fields": fields, "packages": packages}
