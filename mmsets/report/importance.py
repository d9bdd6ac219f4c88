"""Feature importance per modality, averaged over the seeds of each configuration, one table per kind.

The kinds (``mmsets.models.importance.KINDS``) measure different things and are never mixed in one
table; DM2S2's modalities are token-sequence sources such as ``text:plot`` or ``ocr``.
"""

from __future__ import annotations

import numpy as np

from mmsets.data.manifest import Manifest
from mmsets.metrics import aggregate
from mmsets.models.importance import KINDS
from mmsets.report.examples import output_columns, predicted_labels, test_predictions
from mmsets.report.tables import ablation_label, cell, family_label
from mmsets.runs.record import number
from mmsets.store import RaggedStore, StoreError, store_modalities

MATRIX_ITEMS = 12  # test items in the per-item feature-importance matrix
TOKEN_MAPS = 3  # items whose IntraMRA weights are drawn over their tokens

NO_ATTRIBUTION = ("late_fusion", "logreg", "encoder_only")


def kind_label(kind: str) -> str:
    return KINDS.get(kind, (kind, ""))[0]


def missing_note(runs: list[dict]) -> str:
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return runs[0]["status"]
    run = ok[0]
    if run["model"] in NO_ATTRIBUTION:
        return f"n/a ({family_label(run['model'])} has no attribution)"
    if run["pooling"] in ("sum", "mean") and run["model"] in ("dmms", None):
        return f"n/a ({run['pooling']} pooling)"
    if run["model"] == "dm2s2" and run["model_config"].get("inter") is False:
        return "n/a (IntraMRA only: no attention across modalities)"
    return "n/a"  # the runs' problems say why (file missing or unreadable)


def modality_order(names: list[str]) -> list[str]:
    """Modalities in the one order every table shows them: by extractor as the registry lists them
    (``text:plot`` and ``ocr@easyocr`` under text and ocr), then by name."""
    from mmsets.plan.extractors import EXTRACTORS

    known = list(EXTRACTORS)

    def key(name: str) -> tuple[int, str]:
        base = name.split(":")[0].split("@")[0]
        return (known.index(base) if base in known else len(known), name)

    return sorted(dict.fromkeys(names), key=key)


def importance_tables(runs: list[dict], configs: list[dict]) -> dict:
    """{"groups": one per kind with its modalities and a row per configuration (mean ± std share over
    seeds), "missing": configurations without feature importance and why}."""
    by_config: dict[str, list[dict]] = {}
    for run in runs:
        by_config.setdefault(run["config"], []).append(run)
    groups: dict[str, dict] = {}
    missing = []
    for config in configs:
        members = by_config.get(config["name"], [])
        with_fi = [r for r in members if r["status"] == "ok" and r["fi"]]
        if not with_fi:
            if members:
                missing.append({"config": config["name"], "note": missing_note(members)})
            continue
        kinds: dict[str, list[dict]] = {}
        for run in with_fi:
            kinds.setdefault(run["fi"]["kind"], []).append(run)
        for kind, kind_runs in kinds.items():
            label, note = KINDS.get(kind, (kind, ""))
            group = groups.setdefault(kind, {"kind": kind, "label": label, "note": note, "modalities": [], "rows": []})
            for run in kind_runs:  # the runs' modality order, not JSON key order
                for m in [*run["fi"]["modalities"], *run["fi"]["mean_share"]]:
                    if m not in group["modalities"]:
                        group["modalities"].append(m)
            mean, std = aggregate([run["fi"]["mean_share"] for run in kind_runs])
            group["rows"].append({
                "config": config["name"], "model": config["model"], "family": config["family"],
                "label": ablation_label(config) if config["model"] in ("dm2s2", "encoder_only") else config["family"],
                "pooling": config["pooling"], "n": len(kind_runs), "mean": mean,
                "std": std if len(kind_runs) > 1 else {},
            })
    for group in groups.values():
        group["modalities"] = modality_order(group["modalities"])
        for row in group["rows"]:
            row["shares"] = [cell(row["mean"].get(m), row["std"].get(m)) for m in group["modalities"]]
    order = list(KINDS)
    ordered = sorted(groups.values(), key=lambda g: order.index(g["kind"]) if g["kind"] in order else len(order))
    return {"groups": ordered, "missing": missing}


def inter_attention(fi: dict, order: list[str] | None = None) -> dict | None:
    """The InterMRA group of ``importance_tables`` (DM2S2 runs that have it), its rows in ``order`` of
    configuration names (the ablation order) when given; None without such runs."""
    group = next((g for g in fi["groups"] if g["kind"] == "inter_attention"), None)
    if group is None or not order:
        return group
    rank = {name: i for i, name in enumerate(order)}
    return {**group, "rows": sorted(group["rows"], key=lambda r: rank.get(r["config"], len(rank)))}


def item_matrix(runs: list[dict], manifest: Manifest | None, task: str, n: int = MATRIX_ITEMS) -> dict | None:
    """The per-item feature-importance matrix (DMMS Fig. 2-3) of the best run that explains each item:
    ``n`` test items with elements, each with its shares per modality, true and predicted labels."""
    for run in runs:  # best first
        fi = run["fi"]
        if not fi or not fi["per_item"]:
            continue
        preds = test_predictions(run)
        if preds is None:
            continue
        label_cols = output_columns(preds, manifest)
        truth = manifest.frame.set_index(manifest.frame["id"].astype(str))["labels"] if manifest is not None else None
        items = []
        for _, row in preds.iterrows():
            item_id = str(row["id"])
            shares = fi["per_item"].get(item_id)
            if not isinstance(shares, list) or not sum(number(s) or 0 for s in shares):
                continue
            true = row["labels"] if "labels" in preds.columns else (truth.get(item_id) if truth is not None else [])
            items.append({"id": item_id, "shares": [number(s) for s in shares],
                          "true": [str(t) for t in (true if true is not None else [])],
                          # a k-fold run decides per fold (its threshold is not one number): not shown
                          "predicted": None if task == "multilabel" and run["cv"] is not None
                          else predicted_labels(row, run, label_cols, task)})
            if len(items) == n:
                break
        if items:
            order = modality_order(fi["modalities"])
            where = [fi["modalities"].index(m) for m in order]
            for item in items:
                item["shares"] = [item["shares"][j] if j < len(item["shares"]) else None for j in where]
            return {"run": run["name"], "kind": kind_label(fi["kind"]), "modalities": order, "items": items}
    return None


SPACE_MARKS = ("\u0120", "\u2581")  # byte-level BPE's (RoBERTa) and SentencePiece's mark of a word's start


def token_words(pieces: list[str]) -> list[str]:
    """A span's tokenizer pieces as the text they spell, a space before each word but the first: marked by
    BPE and SentencePiece, implied by WordPiece (BERT, MiniLM) wherever a piece lacks its "##" mark."""
    marked = any(p.startswith(SPACE_MARKS) for p in pieces)
    words = [(p.replace(SPACE_MARKS[0], " ").replace(SPACE_MARKS[1], " ") if marked
              else p[2:] if p.startswith("##") else " " + p) for p in pieces]
    if words:
        words[0] = words[0].lstrip()
    return words


def intra_maps(runs: list[dict], feature_paths: dict, n: int = TOKEN_MAPS) -> dict | None:
    """IntraMRA's weights over the tokens of ``n`` test items (DM2S2 Fig. 3) from the best DM2S2 run that kept
    them, read beside the token store's pieces: per item, its modality spans of (piece, weight, shade)."""
    for run in runs:
        path = feature_paths.get(run["features"][0]) if run["model"] == "dm2s2" and run["features"] else None
        weights = run["intra"] if path else None
        if not weights:
            continue
        try:
            with RaggedStore(path) as store:
                if "token" not in store.fields:
                    return {"run": run["name"], "items": [], "problem": f"{run['features'][0]}: the token store "
                            "has no token pieces (written before they were kept); re-extract it to see them"}
                modalities = store_modalities(store) or []
                items = []
                for item_id, w in list(weights.items())[:n]:
                    if item_id not in store:
                        continue
                    pieces = store.get([item_id], "token")[0]
                    modality = store.get([item_id], "modality")[0]
                    if len(pieces) != len(w):
                        continue
                    spans = []
                    for m in sorted(set(int(x) for x in modality if x >= 0)):
                        idx = np.flatnonzero(modality == m)
                        top = max(max(w[i] for i in idx), 1e-9)
                        words = token_words([str(pieces[i]) for i in idx])
                        spans.append({"modality": modalities[m] if m < len(modalities) else str(m),
                                      "tokens": [(word, float(w[i]), round(float(w[i]) / top, 3))
                                                 for word, i in zip(words, idx)]})
                    items.append({"id": item_id, "spans": spans})
        except (StoreError, OSError, KeyError, ValueError) as err:
            return {"run": run["name"], "items": [], "problem": f"token store unreadable: {err}"}
        return {"run": run["name"], "items": items, "problem": None}
    return None
