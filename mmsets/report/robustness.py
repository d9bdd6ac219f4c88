"""Robustness to missing modalities, family by family: each family's best configuration by dev with its test
metric on the full test items, with each modality removed from every test item (and the difference), and on
the test items that have the modality and those that do not.

Read from each run's ``robustness.json`` (``mmsets.runs.robustness``); a token-sequence run's removal is its
re-encoding erasure (``erasure.json``, groups with ``erasure: true``). How a family reads a modality an item
lacks comes from its registry entry (``mmsets.plan.families``), so a concatenation baseline's placeholder
stands beside the scores it gives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmsets.metrics import aggregate
from mmsets.plan.families import FAMILIES
from mmsets.plan.layout import ERASURE, ROBUSTNESS
from mmsets.report.scores import Metric
from mmsets.report.tables import cell, family_best
from mmsets.runs.record import scores

# robustness.json's "removal": how its run's modalities are removed
REMOVAL = {"dropped": "elements dropped", "erasure": "re-encoded without it"}
NOT_ERASED = "not re-encoded (its group has no erasure: true)"
SIDES = ("with", "without")


def load_robustness(run: dict) -> dict | None:
    """A run's robustness.json with only numbers in its scores, a token-sequence run's removal taken from its
    erasure.json; None when it has none (an ensemble, a run from before it) or it is unreadable (then a
    problem of the run)."""
    path = Path(run["dir"]) / ROBUSTNESS
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        record = {
            "modalities": [str(m) for m in raw["modalities"]],
            "full": scores(raw["full"]),
            "removal": str(raw["removal"]),
            "removed": {str(m): _removed(r) for m, r in raw["removed"].items()},
            "coverage": {str(m): {side: {"n_items": int(sides[side]["n_items"]), "test": _scores(sides[side]["test"])}
                                  for side in SIDES} for m, sides in raw["coverage"].items()},
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        run["problems"].append(f"{ROBUSTNESS} unreadable: {err!r}")
        return None
    if record["removal"] == "erasure":
        record["removed"] = _erased(Path(run["dir"]) / ERASURE)
    return record


def _scores(raw: Any) -> dict | None:
    return None if raw is None else scores(raw)


def _removed(raw: dict) -> dict:
    return {"test": scores(raw["test"]), "delta": scores(raw["delta"])}


def _erased(path: Path) -> dict:
    """erasure.json's scores per modality re-encoded without it; {} without one (the report's erasure loader
    names an unreadable one among the run's problems)."""
    try:
        raw = json.loads(path.read_text())
        return {str(m): _removed(r) for m, r in raw["erased"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _cell(found: list[dict | None], key: str) -> dict:
    """Mean ± std over the runs (seeds) of one score; no std from one run."""
    found = [d for d in found if d is not None]
    if not found:
        return cell(None)
    mean, std = aggregate(found)
    return cell(mean.get(key), std.get(key) if len(found) > 1 else None)


def _modality_row(records: list[dict], name: str, key: str) -> dict:
    removed = [r["removed"].get(name) for r in records]
    removal = next((r["removal"] for r in records), None)
    label = NOT_ERASED if removal == "erasure" and not any(removed) else REMOVAL.get(removal, removal)
    sides = {}
    for side in SIDES:
        found = [r["coverage"][name][side] for r in records if name in r["coverage"]]
        sides[f"{side}_it"] = {"n_items": found[0]["n_items"] if found else None,
                               "test": _cell([f["test"] for f in found], key)}
    return {"modality": name, "removal": label,
            "removed": _cell([r["test"] if r else None for r in removed], key),
            "delta": _cell([r["delta"] if r else None for r in removed], key), **sides}


def robustness_table(runs: list[dict], configs: list[dict], main: Metric) -> dict | None:
    """One group of rows per family, its best configuration by dev (``tables.family_best``): the main test
    metric on the full items, then per modality without it, the difference, and on the items with and without
    it (mean ± std over seeds); None when no such configuration has robustness.json."""
    rows = []
    for config in family_best(configs, main):
        members = [r for r in runs if r["config"] == config["name"] and r["status"] == "ok"]
        records = [record for r in members if (record := load_robustness(r)) is not None]
        if not records:
            continue
        modalities: list[str] = []
        for record in records:
            modalities += [m for m in record["modalities"] if m not in modalities]
        entry = FAMILIES.get(config["model"] or "")
        rows.append({"family": config["family"], "config": config["name"], "n": len(records),
                     "missing": entry.missing if entry is not None else "?",
                     "full": _cell([r["full"] for r in records], main.key),
                     "modalities": [_modality_row(records, m, main.key) for m in modalities]})
    return {"rows": rows} if rows else None
