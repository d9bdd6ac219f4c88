"""The report's tuning section: per search (``tune/<search>.json``, mmsets.runs.tune) its trials, the settings it
chose, and the tuned configuration beside the untuned ones it was searched over, both chosen and shown as the
results table does (dev chooses, test is shown)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from mmsets.report.scores import Metric


def search_paths(manifest_path: str | os.PathLike) -> list[Path]:
    """The searches written beside a dataset's manifest (results/{dataset}/tune/*.json)."""
    return sorted((Path(manifest_path).parent / "tune").glob("*.json"))


def tuning_tables(paths: Sequence[str | os.PathLike], configs: list[dict], main: Metric) -> list[dict]:
    """One entry per readable search whose tuned runs are in the report: its trials (pruned ones marked, the
    best one flagged), the chosen settings and the configuration rows (``tables.configurations``) of its tuned
    and untuned runs; an unreadable file is an entry with its problem."""
    by_run = {run: row for row in configs for run in row["runs"]}
    out = []
    for path in paths:
        try:
            result = json.loads(Path(path).read_text())
            tuned_runs, untuned_runs = list(result["tuned_runs"]), list(result.get("untuned_runs") or [])
            trials = [_trial(t, result.get("best_trial")) for t in result["trials"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            out.append({"search": Path(path).stem, "problem": f"{Path(path).name} unreadable: {err}"})
            continue
        if not any(run in by_run for run in tuned_runs):
            continue  # a search of another config: its tuned runs are not in this report
        rows = []
        for kind, names in (("tuned", tuned_runs), ("untuned", untuned_runs)):
            for row in _rows(names, by_run):
                rows.append({**row, "kind": kind})
        rows.sort(key=lambda r: r["kind"] != "tuned")
        out.append({"search": str(result.get("search", Path(path).stem)), "problem": None,
                    "metric": str(result.get("metric")), "objective": str(result.get("objective")),
                    "folds": result.get("folds"), "direction": str(result.get("direction")),
                    "n_trials": result.get("n_trials"), "budget": result.get("budget") or {},
                    "best_value": result.get("best_value"), "best_params": _shown(result.get("best_params") or {}),
                    "space": _shown(result.get("space") or {}), "trials": trials, "rows": rows})
    return out


def _trial(raw: dict, best: int | None) -> dict:
    return {"number": raw.get("number"), "state": str(raw.get("state")), "value": raw.get("value"),
            "params": _shown(raw.get("params") or {}), "duration": raw.get("duration"),
            "epochs": len(raw.get("epochs") or []), "best": raw.get("number") == best}


def _rows(names: list[str], by_run: dict[str, dict]) -> list[dict]:
    seen, rows = set(), []
    for name in names:
        row = by_run.get(name)
        if row is not None and row["name"] not in seen:
            seen.add(row["name"])
            rows.append(row)
    return rows


def _shown(params: dict) -> dict[str, str]:
    """Settings as text (lists of widths, floats at four significant digits)."""
    return {str(k): f"{v:.4g}" if isinstance(v, float) else json.dumps(v) if not isinstance(v, str) else v
            for k, v in params.items()}
