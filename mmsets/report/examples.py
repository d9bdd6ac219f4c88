"""A few test items of the best run with predictions: their text, the truth and the prediction.

What a prediction looks like depends on the task: multi-label shows the most likely labels (bold
above the threshold), single-label the predicted class and its probability, regression the predicted
value beside the target.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from mmsets.data.manifest import Manifest
from mmsets.extract.image_depth import to_eight_bit
from mmsets.metrics import ArgmaxDecision, decision_from_dict
from mmsets.report.collect import store_texts
from mmsets.runs.record import number

MAX_CHARS = 300
THUMBNAIL = 112  # pixels, the longer side
TOP_K = 3
_NOT_OUTPUTS = ("id", "split", "labels", "fold", "prediction", "target")


def truncate(text: Any, limit: int = MAX_CHARS) -> str:
    """Untrusted item text, whitespace collapsed and cut; escaping is the template's job."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def thumbnail(path: Any, size: int = THUMBNAIL) -> str | None:
    """The item's image as a small JPEG data URI, decoded and re-encoded (never the file's own bytes, which
    could hold anything), upright as its EXIF orientation says and a 16-bit image scaled, not clipped, as the
    extractors see them (``mmsets.extract.backbones.to_rgb``); None when there is no image or it does not decode."""
    if not isinstance(path, str) or not path.strip():
        return None
    try:
        with Image.open(path) as image:
            image.draft("RGB", (2 * size, 2 * size))  # JPEG: decode at a fraction of the size
            upright = ImageOps.exif_transpose(to_eight_bit(image))
            upright.thumbnail((size, size))
            small = upright.convert("RGBA")
        canvas = Image.new("RGB", small.size, (255, 255, 255))
        canvas.paste(small, mask=small.getchannel("A"))
        buf = io.BytesIO()
        canvas.save(buf, format="JPEG", quality=80)
    except Exception:  # a broken or missing image: the item is shown without one
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thresholds_of(threshold: Any, n_labels: int) -> np.ndarray | None:
    """One threshold per label from a run's recorded threshold (one for all, or a list); None when it has none."""
    if number(threshold) is not None:
        return np.full(n_labels, float(threshold))
    if isinstance(threshold, list) and len(threshold) == n_labels and all(number(t) is not None for t in threshold):
        return np.asarray(threshold, float)
    return None


def test_predictions(run: dict) -> pd.DataFrame | None:
    """A finished run's test rows of predictions.parquet; None (and a problem noted on the run) when unreadable."""
    if run["status"] != "ok" or not run["predictions"]:
        return None
    try:
        preds = pd.read_parquet(run["predictions"])
    except Exception as err:  # a broken parquet file is a finding to show, not a reason to stop
        run["problems"].append(f"predictions.parquet unreadable: {err}")
        return None
    if "id" not in preds.columns:
        run["problems"].append("predictions.parquet has no id column")
        return None
    return preds[preds["split"] == "test"] if "split" in preds.columns else preds


def row_decision(run: dict, fold: Any) -> Any:
    """A single-label run's decision for the rows of one fold (any row of a run without folds): the one it
    chose on dev, or the argmax for a run that recorded none (from before tuned decisions)."""
    decisions = run.get("decisions") or []
    k = 0 if len(decisions) == 1 else number(fold)
    raw = decisions[int(k)] if k is not None and 0 <= k < len(decisions) else None
    try:
        return decision_from_dict(raw) if isinstance(raw, dict) else ArgmaxDecision()
    except (TypeError, ValueError):  # an unreadable record: the run is still shown
        return ArgmaxDecision()


def decided_classes(preds: pd.DataFrame, run: dict, label_cols: list[str]) -> np.ndarray:
    """The class index a single-label run predicted for each row of its predictions, fold by fold."""
    probs = np.nan_to_num(preds[label_cols].to_numpy(float), nan=0.0)
    folds = preds["fold"].to_numpy() if "fold" in preds.columns else np.zeros(len(preds))
    decided = np.zeros(len(preds), np.int64)
    for fold in pd.unique(folds):
        rows = folds == fold
        decided[rows] = row_decision(run, fold).apply(probs[rows])
    return decided


def _best_predictions(runs: list[dict]) -> tuple[dict | None, pd.DataFrame | None]:
    """The highest-ranked run whose predictions file reads, with its test rows."""
    for run in runs:
        preds = test_predictions(run)
        if preds is not None:
            return run, preds
    return None, None


def output_columns(preds: pd.DataFrame, manifest: Manifest | None) -> list[str]:
    """The class-probability columns of predictions.parquet."""
    known = set(manifest.label_names) if manifest is not None else set()
    return [c for c in preds.columns if c in known] or [
        c for c in preds.columns if c not in _NOT_OUTPUTS and pd.api.types.is_float_dtype(preds[c])]


def predicted_labels(row: pd.Series, run: dict, label_cols: list[str], task: str) -> list[str]:
    """The labels a run predicted for one row under its decision (multi-label: threshold, top-1)."""
    probs = row[label_cols].to_numpy(float) if label_cols else np.zeros(0)
    if not len(probs) or not np.isfinite(probs).any():
        return []
    if task != "multilabel":
        return [label_cols[_row_class(row, run, probs)]]
    thresholds = thresholds_of(run["threshold"], len(label_cols))
    if thresholds is None:
        return []
    above = probs >= thresholds
    if run["top1"]:
        above[int(np.nanargmax(probs))] = True
    return [c for c, a in zip(label_cols, above) if a]


def _row_class(row: pd.Series, run: dict, probs: np.ndarray) -> int:
    """The class a single-label run predicted for one row of its predictions."""
    return int(row_decision(run, row.get("fold")).apply(np.nan_to_num(probs[None], nan=0.0))[0])


def _true_labels(row: pd.Series, has_labels: bool, meta: pd.Series | None) -> list[str]:
    true = row["labels"] if has_labels else (meta["labels"] if meta is not None else [])
    return [str(t) for t in (true if true is not None else [])]


def _multilabel(row, labels, run, label_cols, thresholds) -> dict:
    probs = row[label_cols].to_numpy(float) if label_cols else np.zeros(0)
    top = np.argsort(-probs, kind="stable")[: max(TOP_K, len(labels))]
    above = [thresholds is not None and (probs[i] >= thresholds[i] or (run["top1"] and rank == 0))
             for rank, i in enumerate(top)]
    return {"predicted": [{"label": label_cols[i], "p": float(probs[i]), "hit": label_cols[i] in labels,
                           "above": bool(a)} for i, a in zip(top, above)]}


def _single_label(row, labels, run, label_cols) -> dict:
    probs = row[label_cols].to_numpy(float) if label_cols else np.zeros(0)
    if not len(probs) or not np.isfinite(probs).any():
        return {"predicted": [], "pred_class": None, "pred_p": None, "correct": None}
    k = _row_class(row, run, probs)
    top = [int(i) for i in np.argsort(-np.nan_to_num(probs, nan=-1.0), kind="stable")[:TOP_K]]
    if k not in top:  # a tuned decision may choose a class below the most probable ones
        top[-1] = k
    return {"predicted": [{"label": label_cols[i], "p": float(probs[i]), "hit": label_cols[i] in labels,
                           "above": i == k} for i in top],
            "pred_class": label_cols[k], "pred_p": float(probs[k]), "correct": label_cols[k] in labels}


def _regression(row, meta) -> dict:
    prediction = number(row.get("prediction"))
    target = number(row.get("target"))
    if target is None and meta is not None and "target" in meta.index:
        target = number(pd.to_numeric(meta["target"], errors="coerce"))
    error = prediction - target if prediction is not None and target is not None else None
    return {"prediction": prediction, "target": target, "error": error}


def examples(runs: list[dict], manifest: Manifest | None, stores: list[dict], task: str, n: int = 5) -> dict | None:
    """``n`` test items of the best run with predictions (``runs`` come best first).

    Feature-importance shares come from the same run when it has per-item shares, else from the
    best run that has them.
    """
    run, preds = _best_predictions(runs)
    if run is None:
        return None
    preds = preds.head(n)
    label_cols = output_columns(preds, manifest)
    thresholds = thresholds_of(run["threshold"], len(label_cols))
    fi_run = run if run["fi"] and run["fi"]["per_item"] else next(
        (r for r in runs if r["status"] == "ok" and r["fi"] and r["fi"]["per_item"]), None)

    ids = [str(i) for i in preds["id"]]
    frame = manifest.frame.set_index(manifest.frame["id"].astype(str)) if manifest is not None else None
    texts = store_texts(stores, ids)
    items = []
    for (_, row), item_id in zip(preds.iterrows(), ids):
        meta = frame.loc[item_id] if frame is not None and item_id in frame.index else None
        labels = _true_labels(row, "labels" in preds.columns, meta)
        item = {"id": item_id, "fold": number(row.get("fold")), "true": labels, "fields": [], "fi": None,
                "thumbnail": thumbnail(meta["image"]) if meta is not None and "image" in meta.index else None,
                "predicted": [], "pred_class": None, "pred_p": None, "correct": None,
                "prediction": None, "target": None, "error": None}
        if task == "regression":
            item.update(_regression(row, meta))
        elif task in ("binary", "multiclass"):
            item.update(_single_label(row, labels, run, label_cols))
        else:
            item.update(_multilabel(row, labels, run, label_cols, thresholds))
        if meta is not None:
            item["fields"] += [(f, truncate(meta["text_" + f])) for f in manifest.text_fields
                               if isinstance(meta["text_" + f], str) and meta["text_" + f].strip()]
        item["fields"] += [(name, truncate(t[item_id])) for name, t in texts.items() if t.get(item_id, "").strip()]
        if fi_run is not None and item_id in fi_run["fi"]["per_item"]:
            shares = fi_run["fi"]["per_item"][item_id]
            if isinstance(shares, list):
                item["fi"] = sorted(((m, number(s)) for m, s in zip(fi_run["fi"]["modalities"], shares)),
                                    key=lambda ms: -(ms[1] or 0))
        items.append(item)
    return {"run": run["name"], "task": task, "fi_run": fi_run["name"] if fi_run else None,
            "fi_kind": fi_run["fi"]["kind"] if fi_run else None, "items": items,
            "threshold": run["threshold"] if number(run["threshold"]) is not None else None, "top1": run["top1"]}
