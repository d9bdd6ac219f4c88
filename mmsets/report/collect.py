"""Read what the pipeline left behind (manifest, run directories, feature stores) into plain dicts.

Every loader answers for a broken input with a status and a problem string instead of raising:
a report is how one finds out that a run or an extractor failed, so it must render anyway.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmsets.data.manifest import SPLITS, Manifest, is_missing, read_manifest
from mmsets.plan.dotted import get_dotted
from mmsets.plan.errors import ParamsError
from mmsets.plan.extractors import extractor
from mmsets.plan.ensembles import ENSEMBLE
from mmsets.plan.layout import ERASURE, IMPORTANCE, MODEL, PREDICTIONS
from mmsets.runs.record import ImportanceRecord, RecordError, RunRecord, number, scores
from mmsets.report.scores import main_metric
from mmsets.store import RaggedStore, StoreError, partial_path

MAX_ERRORS = 10
_SECRET = re.compile(r"key|token|secret|passw|credential|auth", re.IGNORECASE)


# --------------------------------------------------------------------------- runs

def _empty_run(run_dir: Path) -> dict:
    return {
        "name": run_dir.name, "dir": str(run_dir), "status": "ok", "problems": [], "task": None,
        "model": None, "features": [], "pooling": None, "variant": None, "config": run_dir.name, "seed": None,
        "epochs": None, "best_epoch": None, "threshold": None, "n_params": None, "train_seconds": None,
        "dev": {}, "test": {}, "dev_std": {}, "test_std": {}, "test_pooled": {}, "folds": [], "cv": None,
        "model_config": {}, "history": [], "top1": False, "decisions": [], "fi": None, "predictions": None,
        "best": False, "erasure": None, "intra": {}, "ensemble": None, "group": None, "training": {},
        "decision": None, "n_items": {}, "provenance": None, "stores": {},
    }


def load_run(run_dir: str | os.PathLike, task: str | None = None) -> dict:
    """One run directory (docs/formats.md) as a flat dict with every key present; its configuration
    (the runs that differ only in their seed) and variant are those its metrics.json records.

    ``task`` is the report's task, used when metrics.json does not name one (runs from before tasks).
    """
    run_dir = Path(run_dir)
    run = _empty_run(run_dir)
    if not run_dir.is_dir():
        run.update(status="missing", problems=["run directory missing"])
        return run
    try:
        record = RunRecord.read(run_dir)
    except RecordError as err:
        run.update(status="failed", problems=[str(err)])
        record = RunRecord(run_dir.name)

    run.update(name=record.run, task=record.task or task or "multilabel", model=record.model,
               pooling=record.pooling, config=record.configuration, variant=record.variant,
               features=record.features, model_config=record.model_config, seed=record.seed,
               epochs=record.epochs, best_epoch=record.best_epoch, n_params=record.n_params,
               train_seconds=record.train_seconds, threshold=record.threshold, history=record.history,
               dev=record.dev, test=record.test, dev_std=record.dev_std or {}, test_std=record.test_std or {},
               test_pooled=record.test_pooled or {}, group=record.group, training=record.training,
               decision=record.decision, n_items=record.n_items, provenance=record.provenance or None,
               stores=record.stores or {})
    # Training may also force each item's most likely label (chosen on dev); predictions follow it.
    run["top1"] = bool((record.top1_rule or {}).get("applied"))
    # The decisions chosen on dev, one per fold of a k-fold run (None: a run from before they were recorded).
    run["decisions"] = [f.get("decision") for f in record.folds or []] if record.cv is not None else [record.decision]
    if record.cv is not None:
        run["cv"] = {str(k): v for k, v in record.cv.items() if isinstance(v, (int, float, str, bool))}
        run["folds"] = [{"dev": scores(f.get("dev")), "test": scores(f.get("test"))}
                        for f in record.folds or [] if isinstance(f.get("test"), dict)]
    main = main_metric(run["task"])
    if run["status"] == "ok" and run["test"].get(main.key) is None:
        run["problems"].append(f"metrics.json has no test {main.label}")

    predictions = run_dir / PREDICTIONS
    if predictions.exists():
        run["predictions"] = str(predictions)
    elif run["status"] == "ok":
        run["problems"].append(f"{PREDICTIONS} missing")
    if record.model == ENSEMBLE:  # no model of its own, no importance: its members have them
        run["ensemble"] = _ensemble_summary(record.extras.get("ensemble"))
        return run
    if run["status"] == "ok" and not (run_dir / MODEL).exists():
        run["problems"].append(f"{MODEL} missing")
    run["fi"] = _load_fi(run_dir, run)
    run["erasure"] = _load_erasure(run_dir, run)
    return run


def _ensemble_summary(raw: Any) -> dict | None:
    """metrics.json's ``ensemble``: its kind and each configuration combined with its weight."""
    if not isinstance(raw, dict):
        return None
    configurations = [c for c in raw.get("configurations") or [] if isinstance(c, dict)]
    return {"kind": str(raw.get("kind") or "?"), "weighting": str(raw.get("weighting") or "?"),
            "chosen_by": str(raw.get("chosen_by") or "?"),
            "members": [{"configuration": str(c.get("configuration")), "model": str(c.get("model")),
                         "weight": number(c.get("weight")), "dev": number(c.get("dev")),
                         "n_runs": len(c.get("runs") or [])} for c in configurations]}


def _load_erasure(run_dir: Path, run: dict) -> dict | None:
    """erasure.json (DM2S2 Fig. 2), when the run has one: {modality: {metric: erased - full}}."""
    path = run_dir / ERASURE
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        order = [m for m in raw.get("modalities") or [] if m in raw["erased"]]  # the run's order, not the file's
        return {str(m): scores(raw["erased"][m].get("delta")) for m in order + sorted(set(raw["erased"]) - set(order))
                if isinstance(raw["erased"][m], dict)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        run["problems"].append(f"{ERASURE} unreadable: {err!r}")
        return None


def _load_fi(run_dir: Path, run: dict) -> dict | None:
    """Feature-importance shares; None when the run has none (sum/mean pooling, ...) or the file is bad."""
    if not (run_dir / IMPORTANCE).exists():
        if run["status"] == "ok":
            run["problems"].append(f"{IMPORTANCE} missing")
        return None
    try:
        fi = ImportanceRecord.read(run_dir)
    except RecordError as err:
        run["problems"].append(str(err))
        return None
    run["intra"] = fi.token_weights or {}
    if fi.mean_share is None:
        return None
    kind = fi.kind or ("argmax" if fi.pooling in ("max", "min") else "share")  # files from before "kind"
    return {"pooling": fi.pooling, "kind": kind, "modalities": fi.modalities, "mean_share": fi.mean_share,
            "per_item": dict(zip(fi.ids, fi.shares)) if fi.ids is not None else {}}


# --------------------------------------------------------------------------- manifest

def load_manifest(path: str | os.PathLike) -> tuple[Manifest | None, str | None]:
    try:
        return read_manifest(path), None
    except FileNotFoundError:
        return None, f"manifest {path} missing"
    except Exception as err:  # pyarrow and pandas raise many types; the report must still render
        return None, f"manifest {path} unreadable: {err}"


def _present(value: Any) -> bool:
    return not is_missing(value)


def coverage(manifest: Manifest) -> dict:
    """Items per split with an image path, each text field, each categorical field, any label."""
    frame = manifest.frame
    splits = [s for s in SPLITS if (frame["split"] == s).any()]
    splits += sorted(set(map(str, frame["split"].unique())) - set(splits))
    masks = {s: (frame["split"] == s).to_numpy() for s in splits}
    masks["all"] = np.ones(len(frame), bool)
    checks = [("items", np.ones(len(frame), bool)), ("with image", frame["image"].map(_present).to_numpy(bool))]
    checks += [(f"with text: {f}", manifest.text(f).map(_present).to_numpy(bool)) for f in manifest.text_fields]
    checks += [(f"with {f}", frame["cat_" + f].map(_present).to_numpy(bool)) for f in manifest.categorical_fields]
    if manifest.task == "regression" and "target" in frame.columns:
        checks.append(("with target", np.isfinite(pd.to_numeric(frame["target"], errors="coerce").to_numpy(float))))
    else:
        checks.append(("with >= 1 label", frame["labels"].map(len).to_numpy() > 0))
    rows = [{"name": name, "counts": [int((ok & masks[s]).sum()) for s in masks]} for name, ok in checks]
    return {"splits": list(masks), "rows": rows}


def label_frequency(manifest: Manifest) -> dict:
    """Items per label and split, most frequent first; labels outside ``label_names`` are kept too."""
    frame = manifest.frame
    splits = [s for s in SPLITS if (frame["split"] == s).any()]
    names = list(manifest.label_names)
    counts: dict[str, dict[str, int]] = {n: {} for n in names}
    for split, labels in zip(frame["split"], frame["labels"]):
        for label in set(map(str, labels)):
            per = counts.setdefault(label, {})
            per[split] = per.get(split, 0) + 1
    rows = [{"label": n, "counts": [c.get(s, 0) for s in splits], "total": sum(c.values())}
            for n, c in counts.items()]
    rows.sort(key=lambda r: -r["total"])
    return {"splits": splits, "rows": rows}


# --------------------------------------------------------------------------- feature stores

def redact(params: dict) -> list[tuple[str, str]]:
    """Store params as (key, short text), values of secret-looking keys hidden."""
    out = []
    for key, value in sorted(params.items()):
        if _SECRET.search(str(key)):
            text = "***"
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
        out.append((str(key), text if len(text) <= 200 else text[:200] + "…"))
    return out


def load_store(name: str, path: str | os.PathLike, manifest_ids: set[str] | None = None) -> dict:
    path = Path(path)
    info = {"name": name, "path": str(path), "status": "ok", "problem": None, "extractor": None, "model": None,
            "dim": None, "dtype": None, "n_items": None, "with_elements": None, "elements": None, "mean": None,
            "max": None, "not_in_store": None, "not_in_manifest": None, "params": [], "has_text": False,
            "summary": None, "ocr_backend": None}
    if not path.exists():
        incomplete = partial_path(path).exists()
        info.update(status="incomplete" if incomplete else "missing",
                    problem="extraction interrupted (.partial file only)" if incomplete else "file missing")
        return info
    try:
        with RaggedStore(path) as store:
            counts = store.counts()
            info.update(
                extractor=str(store.attrs.get("extractor", name)), model=str(store.attrs.get("model", "")),
                dim=store.dim, dtype=str(store.file["data"].dtype), n_items=len(store),
                with_elements=int((counts > 0).sum()), elements=int(counts.sum()),
                mean=float(counts.mean()) if len(counts) else None, max=int(counts.max()) if len(counts) else None,
                params=redact(store.params), has_text="text" in store.fields, summary=_summary(store.summary),
                ocr_backend=_ocr_backend(store),
            )
            if manifest_ids is not None:
                ids = set(store.ids)
                info.update(not_in_store=len(manifest_ids - ids), not_in_manifest=len(ids - manifest_ids))
    except (StoreError, OSError, KeyError, ValueError) as err:
        info.update(status="unreadable", problem=str(err))
    return info


def _ocr_backend(store: RaggedStore) -> str | None:
    """The OCR backend whose words a store holds or was made from: its own (the ocr store), the one it recorded
    (ocr_text), or that of the ocr store its registry entry says it read (tokens with an ocr span)."""
    name = store.attrs.get("extractor")
    if name == "ocr":
        return str(store.params.get("backend") or "") or None
    if store.attrs.get("ocr_backend"):
        return str(store.attrs["ocr_backend"])
    try:
        reads = extractor(str(name)).upstream_of(store.params)
    except ParamsError:
        return None
    paths = [get_dotted(store.params, key) for key, upstream in reads.items() if upstream == "ocr"]
    if not paths or not paths[0]:
        return None
    try:
        with RaggedStore(paths[0]) as ocr:
            return str(ocr.params.get("backend") or "") or None
    except (StoreError, OSError, KeyError, ValueError):
        return None


_SUMMARY_KEYS = {"items", "with_elements", "elements", "skipped", "errors", "items_per_s", "seconds", "device",
                 "cut_to_max_elements", "max_elements"}
MAX_EXTRA = 30


def _summary(raw: Any) -> dict:
    raw = raw if isinstance(raw, dict) else {}
    skipped = raw.get("skipped") if isinstance(raw.get("skipped"), dict) else {}
    errors = raw.get("errors") if isinstance(raw.get("errors"), list) else []
    errors = [e if isinstance(e, dict) else {"id": "", "reason": e} for e in errors]
    skipped = sorted(((str(k), number(v)) for k, v in skipped.items()), key=lambda kv: -(kv[1] or 0))
    return {
        "n_items": number(raw.get("items")), "with_elements": number(raw.get("with_elements")),
        "elements": number(raw.get("elements")),
        # items that had more elements than the extractor's max_elements, cut to it
        "cut": number(raw.get("cut_to_max_elements")), "max_elements": number(raw.get("max_elements")),
        "skipped": skipped, "n_skipped": sum(v or 0 for _, v in skipped),
        "n_errors": len(errors),
        "errors": [{"id": str(e.get("id", "")), "reason": str(e.get("reason", ""))[:300],
                    "detail": without_folders(str(e.get("detail") or ""))[:300]} for e in errors[:MAX_ERRORS]],
        "items_per_s": number(raw.get("items_per_s")), "seconds": number(raw.get("seconds")),
        "device": str(raw["device"]) if raw.get("device") is not None else None,
        "extra": _extra({k: v for k, v in raw.items() if k not in _SUMMARY_KEYS}),
    }


# An absolute path's folders (up to its file name): a report is shared, and where the images lie on the machine that
# made it (a home folder, a user name) is not the reader's business nor any help to them.
FOLDERS = re.compile(r"(?<![\w.~])(?:[A-Za-z]:)?(?:[/\\][^/\\\s:]+)*[/\\](?=[^/\\\s:]+)")


def without_folders(text: str) -> str:
    """``text`` with every absolute path in it cut to its file name: "/home/ana/posters/tt1.jpg: no such file" ->
    "tt1.jpg: no such file"."""
    return FOLDERS.sub("", text)


def _extra(raw: dict, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    """Other summary entries (tokens_per_item, truncated, resumed, ...) as (dotted key, scalar), two
    levels deep at most: {"truncated": {"ocr": 3}} -> ("truncated.ocr", 3); lists are left out."""
    out: list[tuple[str, Any]] = []
    for key, value in sorted(raw.items(), key=lambda kv: str(kv[0])):
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if depth < 2:
                out += _extra(value, name + ".", depth + 1)
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out.append((name, value if number(value) is not None else ("–" if value is None else str(value)[:80])))
    return out[:MAX_EXTRA] if depth == 0 else out


def store_texts(stores: list[dict], ids: list[str]) -> dict[str, dict[str, str]]:
    """For stores with a per-element ``text`` field (OCR, ...): {store: {id: joined text}}."""
    out: dict[str, dict[str, str]] = {}
    for info in stores:
        if not info["has_text"]:
            continue
        try:
            with RaggedStore(info["path"]) as store:
                present = [i for i in ids if i in store]
                out[info["name"]] = {i: " ".join(map(str, t)) for i, t in zip(present, store.get(present, "text"))}
        except (StoreError, OSError, KeyError) as err:
            info["problem"] = f"text unreadable: {err}"
    return out
