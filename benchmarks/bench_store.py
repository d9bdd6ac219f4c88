"""Writing a feature store: items buffered and written per commit against one write per item.

    python benchmarks/bench_store.py [--items 4000] [--dim 2048] [--max-elements 3]

The reference is the same writer committing after every item (``commit_every=1``: one resize and write
per array per item, which is what every item cost before writes were buffered). On a GPU the writes sit
between two forwards, so their cost per item is set beside the model's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from mmsets.store import RaggedStore, RaggedWriter

FIELDS = {"boxes": ((4,), "float32"), "label": ((), "str")}


def write(path: Path, items: list[np.ndarray], commit_every: int) -> float:
    start = time.perf_counter()
    writer = RaggedWriter(path, extractor="bench", dim=items[0].shape[1], fields=FIELDS, resume=False,
                          commit_every=commit_every)
    for i, data in enumerate(items):
        writer.add(f"item-{i}", data, boxes=np.zeros((len(data), 4)), label=["x"] * len(data))
    writer.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=4000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--max-elements", type=int, default=3, help="elements per item: 0..this")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    items = [rng.standard_normal((int(k), args.dim)).astype(np.float32)
             for k in rng.integers(0, args.max_elements + 1, args.items)]
    with tempfile.TemporaryDirectory() as tmp:
        per_item = write(Path(tmp) / "per_item.h5", items, commit_every=1)
        buffered = write(Path(tmp) / "buffered.h5", items, commit_every=64)
        with RaggedStore(Path(tmp) / "per_item.h5") as a, RaggedStore(Path(tmp) / "buffered.h5") as b:
            assert all(np.array_equal(x, y) for x, y in zip(a.get(a.ids), b.get(b.ids))), "the stores differ"
    figures = {"items": args.items, "dim": args.dim, "per_item_ms": 1e3 * per_item / args.items,
               "buffered_ms": 1e3 * buffered / args.items, "ratio": per_item / buffered}
    print(f"{'writes':10s} {'ms/item':>8s}\nper item   {figures['per_item_ms']:8.3f}\n"
          f"buffered   {figures['buffered_ms']:8.3f}\nratio      {figures['ratio']:7.1f}x (same stores)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
