"""Views over the collected runs: ranking, the features x pooling pivot, FI shares, example items."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import pandas as pd

from mmsets.data.manifest import Manifest
from mmsets.report.collect import number, store_texts

MAX_CHARS = 300
TOP_K = 3


def rank_runs(runs: list[dict]) -> list[dict]:
    """Finished runs by test F1-micro (best first), then runs without it, then failed/missing ones."""
    def key(run: dict) -> tuple:
        score = run["test"]["f1_micro"]
        return (run["status"] != "ok", score is None, -(score or 0.0), run["name"])

    runs = sorted(runs, key=key)
    scored = [r for r in runs if r["status"] == "ok" and r["test"]["f1_micro"] is not None]
    if scored:
        best = max(r["test"]["f1_micro"] for r in scored)
        for run in scored:
            run["best"] = run["test"]["f1_micro"] == best
    return runs


def features_label(run: dict) -> str:
    return " + ".join(run["features"]) if run["features"] else "?"


def pivot(runs: list[dict]) -> dict:
    """Mean test F1-micro (over seeds) per (model, feature combination) x pooling."""
    cells: dict[tuple, dict[str, list[float]]] = {}
    poolings: list[str] = []
    for run in runs:
        score = run["test"]["f1_micro"]
        if run["status"] != "ok" or score is None:
            continue
        pooling = run["pooling"] or "-"
        if pooling not in poolings:
            poolings.append(pooling)
        cells.setdefault((run["model"] or "?", features_label(run)), {}).setdefault(pooling, []).append(score)
    best = max((statistics.fmean(v) for row in cells.values() for v in row.values()), default=None)
    rows = []
    for (model, features), row in sorted(cells.items(), key=lambda kv: -max(statistics.fmean(v) for v in kv[1].values())):
        out = []
        for pooling in poolings:
            scores = row.get(pooling)
            if not scores:
                out.append(None)
                continue
            mean = statistics.fmean(scores)
            out.append({"mean": mean, "std": statistics.stdev(scores) if len(scores) > 1 else None,
                        "n": len(scores), "best": mean == best})
        rows.append({"model": model, "features": features, "cells": out})
    return {"poolings": poolings, "rows": rows}


def fi_table(runs: list[dict]) -> dict:
    """Mean FI share per modality for every run; ``None`` shares where the run has none."""
    modalities: list[str] = []
    for run in runs:
        fi = run["fi"] or {"modalities": [], "mean_share": {}}
        for m in [*fi["modalities"], *fi["mean_share"]]:  # the run's modality order, not JSON key order
            if m not in modalities:
                modalities.append(m)
    rows = []
    for run in runs:
        share = (run["fi"] or {}).get("mean_share")
        if share:
            rows.append({"run": run["name"], "pooling": run["pooling"], "shares": [share.get(m) for m in modalities],
                         "note": None})
        else:
            rows.append({"run": run["name"], "pooling": run["pooling"], "shares": None, "note": _fi_note(run)})
    return {"modalities": modalities, "rows": rows}


def _fi_note(run: dict) -> str:
    if run["status"] != "ok":
        return run["status"]
    if run["pooling"] in ("sum", "mean"):
        return f"n/a ({run['pooling']} pooling)"
    return "n/a"  # the run's problems say why (file missing or unreadable)


def truncate(text: Any, limit: int = MAX_CHARS) -> str:
    """Untrusted item text, whitespace collapsed and cut; escaping is the template's job."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _threshold_for(threshold: Any, n_labels: int) -> np.ndarray | None:
    if number(threshold) is not None:
        return np.full(n_labels, float(threshold))
    if isinstance(threshold, list) and len(threshold) == n_labels and all(number(t) is not None for t in threshold):
        return np.asarray(threshold, float)
    return None


def _best_predictions(runs: list[dict]) -> tuple[dict | None, pd.DataFrame | None]:
    """The highest-ranked run whose predictions file reads, with its test rows."""
    for run in runs:
        if run["status"] != "ok" or not run["predictions"]:
            continue
        try:
            preds = pd.read_parquet(run["predictions"])
        except Exception as err:  # a broken parquet file is a finding to show, not a reason to stop
            run["problems"].append(f"predictions.parquet unreadable: {err}")
            continue
        if "id" not in preds.columns:
            run["problems"].append("predictions.parquet has no id column")
            continue
        return run, preds[preds["split"] == "test"] if "split" in preds.columns else preds
    return None, None


def examples(runs: list[dict], manifest: Manifest | None, stores: list[dict], n: int = 5) -> dict | None:
    """A few test items of the best run with predictions: text, true labels, top predictions, FI shares.

    FI shares come from the same run when it has them, else from the best run with per-item shares.
    """
    run, preds = _best_predictions(runs)
    if run is None:
        return None
    preds = preds.head(n)
    known = set(manifest.label_names) if manifest is not None else set()
    label_cols = [c for c in preds.columns if c in known] or [
        c for c in preds.columns if c not in ("id", "split", "labels") and pd.api.types.is_float_dtype(preds[c])]
    thresholds = _threshold_for(run["threshold"], len(label_cols))
    fi_run = run if run["fi"] and run["fi"]["per_item"] else next(
        (r for r in runs if r["status"] == "ok" and r["fi"] and r["fi"]["per_item"]), None)

    ids = [str(i) for i in preds["id"]]
    frame = manifest.frame.set_index("id") if manifest is not None else None
    texts = store_texts(stores, ids)
    items = []
    for (_, row), item_id in zip(preds.iterrows(), ids):
        meta = frame.loc[item_id] if frame is not None and item_id in frame.index else None
        true = row["labels"] if "labels" in preds.columns else (meta["labels"] if meta is not None else [])
        true = [str(t) for t in (true if true is not None else [])]
        probs = row[label_cols].to_numpy(float) if label_cols else np.zeros(0)
        top = np.argsort(-probs, kind="stable")[: max(TOP_K, len(true))]
        predicted = [{"label": label_cols[i], "p": float(probs[i]), "hit": label_cols[i] in true,
                      "above": bool(thresholds is not None and (probs[i] >= thresholds[i] or (run["top1"] and rank == 0)))}
                     for rank, i in enumerate(top)]
        fields = []
        if meta is not None:
            fields += [(f, truncate(meta["text_" + f])) for f in manifest.text_fields
                       if isinstance(meta["text_" + f], str) and meta["text_" + f].strip()]
        fields += [(name, truncate(t[item_id])) for name, t in texts.items() if t.get(item_id, "").strip()]
        fi = None
        if fi_run is not None and item_id in fi_run["fi"]["per_item"]:
            shares = fi_run["fi"]["per_item"][item_id]
            fi = sorted(((m, number(s)) for m, s in zip(fi_run["fi"]["modalities"], shares)),
                        key=lambda ms: -(ms[1] or 0))
        items.append({"id": item_id, "fields": fields, "true": true, "predicted": predicted, "fi": fi})
    return {"run": run["name"], "fi_run": fi_run["name"] if fi_run else None, "items": items,
            "threshold": run["threshold"] if number(run["threshold"]) is not None else None, "top1": run["top1"]}
