"""Feature importance per modality, averaged over the seeds of each configuration, one table per kind.

The kinds (``mmsets.models.importance.KINDS``) measure different things and are never mixed in one
table; DM2S2's modalities are token-sequence sources such as ``text:plot`` or ``ocr``.
"""

from __future__ import annotations

from mmsets.metrics import aggregate
from mmsets.models.importance import KINDS
from mmsets.report.tables import ablation_label, cell, family_label

NO_ATTRIBUTION = ("late_fusion", "logreg", "encoder_only")


def kind_label(kind: str) -> str:
    return KINDS.get(kind, (kind, ""))[0]


def _missing_note(runs: list[dict]) -> str:
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return runs[0]["status"]
    run = ok[0]
    if run["model"] in NO_ATTRIBUTION:
        return f"n/a ({family_label(run['model'])} has no attribution)"
    if run["pooling"] in ("sum", "mean") and run["model"] in ("dmms", None):
        return f"n/a ({run['pooling']} pooling)"
    return "n/a"  # the runs' problems say why (file missing or unreadable)


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
                missing.append({"config": config["name"], "note": _missing_note(members)})
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
