"""Compare two results trees value by value: the check that a refactor changed no output.

    python tools/compare_results.py BEFORE/results AFTER/results

Feature stores (every array, and every attribute but the timing in the summary), each run's
metrics.json (every key the first tree has; timings apart), feature_importance.json and
predictions.parquet must be equal. Keys only the second tree has are listed, not failed; ``--renamed OLD=NEW``
compares a key renamed on purpose under its new name. A store's ``inputs`` (per-item fingerprints of absolute
paths and file times, for resuming) differ between any two trees and are not compared. Exit status 1 on any
difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

TIMING = {"train_seconds", "seconds", "items_per_s", "tokens_per_s"}  # wall-clock figures differ from run to run
TREE_SPECIFIC = {"inputs"}  # store datasets that name the tree's own paths and file times
RENAMED: dict[str, str] = {}  # --renamed: key before -> key after


def _diff(a, b, where: str, out: list[str], added: set[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a:
            if key in TIMING:
                continue
            if key in RENAMED and RENAMED[key] in b and key not in b:
                _diff(a[key], b[RENAMED[key]], f"{where}.{key}->{RENAMED[key]}", out, added)
            elif key not in b:
                out.append(f"{where}.{key}: missing after")
            else:
                _diff(a[key], b[key], f"{where}.{key}", out, added)
        if where.endswith(":"):  # a file's top level
            added.update(f"{where}{key}" for key in b if key not in a)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: {len(a)} entries before, {len(b)} after")
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{where}[{i}]", out, added)
    elif a != b and not (isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b)):
        out.append(f"{where}: {a!r} before, {b!r} after")


def _store(path_a: Path, path_b: Path, out: list[str]) -> None:
    with h5py.File(path_a, "r") as a, h5py.File(path_b, "r") as b:
        if sorted(a) != sorted(b):
            out.append(f"{path_a.name}: datasets {sorted(a)} before, {sorted(b)} after")
        for name in a:
            if name in b and name not in TREE_SPECIFIC and not np.array_equal(a[name][()], b[name][()]):
                out.append(f"{path_a.name}: dataset {name!r} differs")
        attrs_a = {k: v for k, v in a.attrs.items()}
        attrs_b = {k: v for k, v in b.attrs.items()}
        for key in sorted(set(attrs_a) | set(attrs_b)):
            va, vb = attrs_a.get(key), attrs_b.get(key)
            if key == "summary":
                _diff(json.loads(va), json.loads(vb), f"{path_a.name}:summary", out, set())
            elif not np.array_equal(np.asarray(va, dtype=object), np.asarray(vb, dtype=object)):
                out.append(f"{path_a.name}: attribute {key!r}: {va!r} before, {vb!r} after")


def compare(before: Path, after: Path) -> tuple[list[str], dict[str, int], set[str]]:
    problems: list[str] = []
    counts = {"stores": 0, "runs": 0}
    added: set[str] = set()
    for store in sorted(before.glob("*/features/*.h5")):
        other = after / store.relative_to(before)
        counts["stores"] += 1
        if not other.exists():
            problems.append(f"{store.relative_to(before)}: missing after")
        else:
            _store(store, other, problems)
    for run in sorted(p.parent for p in before.glob("*/runs/*/metrics.json")):
        other = after / run.relative_to(before)
        counts["runs"] += 1
        name = str(run.relative_to(before))
        for file in ("metrics.json", "feature_importance.json"):
            if not (other / file).exists():
                problems.append(f"{name}/{file}: missing after")
                continue
            _diff(json.loads((run / file).read_text()), json.loads((other / file).read_text()), f"{file}:", problems,
                  added)
        frames = [pd.read_parquet(d / "predictions.parquet") for d in (run, other)]
        try:
            pd.testing.assert_frame_equal(*frames, check_exact=True)
        except AssertionError as err:
            problems.append(f"{name}/predictions.parquet: {str(err).splitlines()[0]}")
    return problems, counts, added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--renamed", action="append", default=[], metavar="OLD=NEW",
                        help="a key renamed on purpose: its value before is compared with NEW's after")
    args = parser.parse_args(argv)
    RENAMED.update(pair.split("=", 1) for pair in args.renamed)
    problems, counts, added = compare(args.before, args.after)
    print(f"compared {counts['stores']} feature stores and {counts['runs']} runs "
          "(metrics.json, feature_importance.json, predictions.parquet)")
    if added:
        print("keys only after:", ", ".join(sorted(added)))
    for line in problems:
        print("DIFFERS", line)
    print("identical" if not problems else f"{len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
