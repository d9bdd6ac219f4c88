"""Views over the collected runs: the per-run ranking, results over seeds per configuration, the best
configuration per model family and the DM2S2 ablations.

Every choice here (ranking, "best", "≈ best", each family's best, the ablations' best) is made on the main
metric on **dev** (k-fold runs: their validation folds); test is shown beside it and never chooses.

A configuration is a run name without its ``-s<seed>`` suffix. Its scores are the mean and sample
standard deviation over its seeds or, for k-fold runs, over all folds of all its seeds
(``mmsets.metrics.aggregate_runs``); a score shown with one run or fold has no standard deviation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmsets.metrics import aggregate, aggregate_runs
from mmsets.runs.record import number
from mmsets.report.scores import Metric, order_key

FAMILIES = {"dmms": "DMMS", "dm2s2": "DM2S2", "encoder_only": "encoder only", "late_fusion": "late fusion",
            "gmu": "GMU", "lightgbm": "LightGBM", "logreg": "logistic regression", "ensemble": "ensemble"}
SEQUENCE_FAMILIES = ("dm2s2", "encoder_only")
BASELINES = ("late_fusion", "gmu", "lightgbm", "logreg")


def family_label(model: str | None) -> str:
    return FAMILIES.get(model or "", model or "?")


def features_label(run: dict) -> str:
    return " + ".join(run["features"]) if run["features"] else "?"


def cell(mean: Any, std: Any = None) -> dict:
    return {"mean": number(mean), "std": number(std)}


def _finished(run: dict, main: Metric) -> bool:
    return run["status"] == "ok" and run["test"].get(main.key) is not None


def single_class(run: dict) -> bool:
    """A single-label run whose decision gives every test item the same class."""
    return run["status"] == "ok" and number(run["test"].get("n_predicted_classes")) == 1


# --------------------------------------------------------------------------- single runs

def rank_runs(runs: list[dict], main: Metric) -> list[dict]:
    """Finished runs by the main dev metric (best first), then runs without it, then failed/missing ones;
    each run gets ``cells``: its test metrics (k-fold: mean ± std over folds) and dev main metric."""
    runs = sorted(runs, key=lambda r: (r["status"] != "ok", not _finished(r, main),
                                       order_key(r["dev"].get(main.key), main), r["name"]))
    scored = [r for r in runs if _finished(r, main) and r["dev"].get(main.key) is not None]
    if scored:
        best = scored[0]["dev"][main.key]
        for run in scored:
            run["best"] = run["dev"][main.key] == best
    for run in runs:
        fold_std = run["cv"] is not None
        run["single_class"] = single_class(run)
        run["cells"] = {k: cell(v, run["test_std"].get(k) if fold_std else None)
                        for k, v in run["test"].items() if not isinstance(v, dict)}
        run["dev_cell"] = cell(run["dev"].get(main.key), run["dev_std"].get(main.key) if fold_std else None)
    return runs


def dev_mean(row: dict, main: Metric) -> float | None:
    """A configuration's main dev metric (mean over seeds or folds): what every choice of the report uses."""
    return row["dev"].get("mean") if row["test"].get(main.key, {}).get("mean") is not None else None


# --------------------------------------------------------------------------- configurations

def _units(run: dict) -> list[dict]:
    """What one run adds to its configuration's mean: its folds (k-fold), else its dev and test scores."""
    if run["cv"] is not None and run["folds"]:
        return run["folds"]
    return [{"dev": run["dev"], "test": run["test"]}]


def _aggregate(ok: list[dict]) -> tuple[dict, dict, dict, dict, int]:
    """(test mean, test std, dev mean, dev std, number of units) of a configuration's finished runs."""
    if len(ok) == 1 and ok[0]["cv"] is not None and not ok[0]["folds"]:  # folds unreadable: the run's own
        run = ok[0]
        return run["test"], run["test_std"], run["dev"], run["dev_std"], int(number(run["cv"].get("folds")) or 1)
    units = [u for run in ok for u in _units(run)]
    agg = aggregate_runs(units)
    if len(units) < 2:
        return agg["test"]["mean"], {}, agg["dev"]["mean"], {}, len(units)
    return agg["test"]["mean"], agg["test"]["std"], agg["dev"]["mean"], agg["dev"]["std"], len(units)


def configurations(runs: list[dict], main: Metric) -> list[dict]:
    """One row per configuration with mean ± std of every test metric and of the dev main metric, best dev
    first; the best configuration has ``best``, and ``tied`` those whose dev scores over seeds (or folds)
    cannot be told from the best's."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(run["config"], []).append(run)
    rows = []
    for name, members in groups.items():
        ok = [r for r in members if _finished(r, main)]
        first = ok[0] if ok else members[0]
        row = {
            "name": name, "model": first["model"], "family": family_label(first["model"]),
            "features": features_label(first), "feature_list": first["features"], "pooling": first["pooling"],
            "variant": first["variant"], "model_config": first["model_config"],
            "n": len(ok), "n_failed": len(members) - len(ok), "cv": any(r["cv"] is not None for r in ok),
            "n_folds": None, "seeds": sorted({int(r["seed"]) for r in ok if r["seed"] is not None}),
            "runs": [r["name"] for r in members], "test": {}, "dev": cell(None), "dev_scores": {}, "test_scores": {},
            "per_class": {}, "per_fine_class": {},
            "best": False, "tied": False, "values": [], "single_class": any(single_class(r) for r in ok),
            "ensemble": (first.get("ensemble") or None) if first["model"] == "ensemble" else None,
        }
        if ok:
            row["values"] = [v for run in ok for u in _units(run) if (v := number(u["dev"].get(main.key))) is not None]
            test, test_std, dev, dev_std, n_units = _aggregate(ok)
            row["n_folds"] = n_units if row["cv"] else None
            row["test"] = {k: cell(v, test_std.get(k)) for k, v in test.items() if not isinstance(v, dict)}
            row["dev"] = cell(dev.get(main.key), dev_std.get(main.key))
            row["test_scores"] = row["test"]
            row["dev_scores"] = {k: cell(v, dev_std.get(k)) for k, v in dev.items() if not isinstance(v, dict)}
            for key, name in (("per_class_accuracy", "per_class"), ("per_fine_class_accuracy", "per_fine_class")):
                per_class = test.get(key)
                if isinstance(per_class, dict):
                    std = test_std.get(key) if isinstance(test_std.get(key), dict) else {}
                    row[name] = {c: cell(v, std.get(c)) for c, v in per_class.items()}
        rows.append(row)
    rows.sort(key=lambda r: (order_key(dev_mean(r, main), main), r["name"]))
    if rows and dev_mean(rows[0], main) is not None:
        best = dev_mean(rows[0], main)
        for row in rows:
            row["best"] = dev_mean(row, main) == best
        for row in rows:
            row["tied"] = not row["best"] and dev_mean(row, main) is not None and \
                tied(rows[0].get("values", []), row.get("values", []))
    return rows


TIE_P = 0.05


def tied(best: list[float], other: list[float]) -> bool:
    """Whether ``other``'s scores over seeds (or folds) cannot be told from the best's: Welch's t-test
    p >= 0.05. Fewer than two scores on either side cannot tell anything: False."""
    from scipy.stats import ttest_ind

    if len(best) < 2 or len(other) < 2:
        return False
    if np.allclose(best, best[0]) and np.allclose(other, other[0]):  # no spread: the t-test is undefined
        return bool(np.isclose(best[0], other[0]))
    return bool(ttest_ind(best, other, equal_var=False).pvalue >= TIE_P)


def per_class_classes(rows: list[dict], key: str = "per_class") -> list[str]:
    classes: list[str] = []
    for row in rows:
        classes += [c for c in row[key] if c not in classes]
    return classes


def family_best(rows: list[dict], main: Metric) -> list[dict]:
    """The best configuration of each model family by dev (``rows`` come best dev first)."""
    out: dict[str, dict] = {}
    for row in rows:
        if dev_mean(row, main) is not None:
            out.setdefault(row["model"] or "?", row)
    return list(out.values())


# --------------------------------------------------------------------------- modality erasure

ERASURE_METRICS = ("f1_micro", "f1_macro")


def erasure_table(runs: list[dict], rows: list[dict], main: Metric) -> dict | None:
    """DM2S2 Fig. 2: per configuration with erasure results, each modality's change in the test metrics when
    the items are re-encoded without it (mean ± std over seeds); None when no run has them."""
    found = {k for r in runs for deltas in (r["erasure"] or {}).values() for k in deltas}
    keys = [k for k in ERASURE_METRICS if k in found]
    keys = keys or [main.key]
    out = []
    for row in rows:
        members = [r for r in runs if r["config"] == row["name"] and r["status"] == "ok" and r["erasure"]]
        if not members:
            continue
        modalities: list[str] = []
        for r in members:
            modalities += [m for m in r["erasure"] if m not in modalities]
        cells = []
        for m in modalities:
            mean, std = aggregate([r["erasure"].get(m, {}) for r in members])
            cells.append({"modality": m, "deltas": [cell(mean.get(k), std.get(k) if len(members) > 1 else None)
                                                    for k in keys]})
        label = ablation_label(row) if row["model"] in SEQUENCE_FAMILIES else family_label(row["model"])
        out.append({"config": row["name"], "label": label, "n": len(members), "modalities": cells})
    return {"metrics": keys, "rows": out} if out else None


# --------------------------------------------------------------------------- OCR backends

def ocr_comparison(rows: list[dict], stores: list[dict], main: Metric) -> list[dict] | None:
    """Configurations that read OCR words (an ocr_text store, or tokens with an OCR span) with the OCR
    backend behind them, grouped by model (DM2S2 Tables 1-2); None unless two backends are there."""
    backend = {s["name"]: s["ocr_backend"] for s in stores}
    out = []
    for row in rows:
        found = sorted({backend[f] for f in row["feature_list"] if backend.get(f)})
        if found and row["test"].get(main.key, {}).get("mean") is not None:
            label = ablation_label(row) if row["model"] in SEQUENCE_FAMILIES else family_label(row["model"])
            out.append({**row, "label": label, "ocr": ", ".join(found)})
    if len({r["ocr"] for r in out}) < 2:
        return None
    return sorted(out, key=lambda r: (r["label"], order_key(dev_mean(r, main), main), r["ocr"]))


# --------------------------------------------------------------------------- DM2S2 ablations

def ablation_label(row: dict) -> str:
    """A readable name of a DM2S2 / encoder-only configuration from its model_config."""
    cfg = row["model_config"] if isinstance(row["model_config"], dict) else {}
    details = []
    if row["model"] == "encoder_only":
        label = "encoder only"
        if cfg.get("modality_embedding") is False:
            details.append("no modality embedding")
    elif not cfg:
        return f"{family_label(row['model'])} ({row['variant'] or 'settings unknown'})"
    else:
        parts = [name for key, name in (("intra", "IntraMRA"), ("inter", "InterMRA")) if cfg.get(key, True)]
        label = "encoder + " + " + ".join(parts) if parts else "encoder, no MRA"
        if parts:
            details.append(f"{cfg.get('similarity', 'additive')} similarity")
        if cfg.get("residual", True) is False:
            details.append("no residual")
    if cfg.get("pooling") not in (None, "mean"):
        details.append(f"{cfg['pooling']} pooling")
    return label + (f" ({', '.join(map(str, details))})" if details else "")


def _ablation_order(row: dict) -> tuple:
    cfg = row["model_config"] if isinstance(row["model_config"], dict) else {}
    intra, inter = bool(cfg.get("intra", True)), bool(cfg.get("inter", True))
    return (row["model"] != "encoder_only", intra + inter, not intra, cfg.get("similarity", "additive") != "additive",
            cfg.get("residual", True) is False, str(cfg.get("pooling", "mean")) != "mean", row["features"], row["name"])


def ablations(rows: list[dict], main: Metric) -> dict | None:
    """DM2S2 and encoder-only configurations in ablation order, each with its difference in the main
    metric to the encoder-only configuration of the same features; beside them the best DMMS
    configuration and the best of each baseline family."""
    seq = sorted((r for r in rows if r["model"] in SEQUENCE_FAMILIES), key=_ablation_order)
    if not seq:
        return None
    scored = [r for r in seq if dev_mean(r, main) is not None]
    best = min(scored, key=lambda r: order_key(dev_mean(r, main), main))["name"] if scored else None
    out = []
    for row in seq:
        base = next((b for b in seq if b["model"] == "encoder_only" and b["features"] == row["features"]), None)
        mean = row["test"].get(main.key, {}).get("mean")
        base_mean = base["test"].get(main.key, {}).get("mean") if base is not None else None
        delta = mean - base_mean if mean is not None and base_mean is not None and base is not row else None
        out.append({**row, "label": ablation_label(row), "delta": delta, "ablation_best": row["name"] == best})
    families = family_best(rows, main)
    compare = [r for r in families if r["model"] == "dmms"] + [r for r in families if r["model"] in BASELINES]
    return {"rows": out, "compare": compare}
