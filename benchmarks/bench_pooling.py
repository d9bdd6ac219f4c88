"""Masked set pooling on padded batches against pooling each unpadded set in a Python loop.

    python benchmarks/bench_pooling.py [--batch 256] [--dim 1024] [--max-set 12]

The loop is the reference: it is what the padded, masked SetPooling must equal (tests check that),
and the ratio shows what batching it buys.
"""

from __future__ import annotations

import argparse
import time

import torch

from mmsets.models.parts import SetPooling


def best_of(fn, repeats: int = 20) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--max-set", type=int, default=12)
    args = parser.parse_args()
    torch.manual_seed(0)
    sizes = torch.randint(1, args.max_set + 1, (args.batch,))
    x = torch.randn(args.batch, args.max_set, args.dim)
    mask = torch.arange(args.max_set)[None, :] < sizes[:, None]
    print(f"{'pooling':8s} {'loop ms':>9s} {'masked ms':>10s} {'ratio':>7s}")
    for reduction in ("max", "sum", "mean", "min"):
        pool = SetPooling(reduction)
        reduce = {"max": lambda s: s.max(0).values, "min": lambda s: s.min(0).values,
                  "sum": lambda s: s.sum(0), "mean": lambda s: s.mean(0)}[reduction]
        with torch.inference_mode():
            loop = best_of(lambda: torch.stack([reduce(x[i, : sizes[i]]) for i in range(args.batch)]))
            masked = best_of(lambda: pool(x, mask, with_index=False))  # as in training
        print(f"{reduction:8s} {loop * 1e3:9.2f} {masked * 1e3:10.2f} {loop / masked:7.1f}x")


if __name__ == "__main__":
    main()
