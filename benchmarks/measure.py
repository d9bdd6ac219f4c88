"""What the benchmarks share: peak memory of a measurement run in a fresh process."""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
from pathlib import Path
from typing import Callable

CHILD = "--child"  # the hidden flag a benchmark script answers by running one measurement and printing its peak


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it does not inherit the parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_in_child(script: str, *args: str) -> float:
    """Run ``script --child args...`` in a fresh Python and return the peak RSS (MiB) it prints last."""
    proc = subprocess.run([sys.executable, script, CHILD, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(script).name} {CHILD} {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def parse_arguments(parser: argparse.ArgumentParser, child: Callable[..., None], child_args: int) -> argparse.Namespace:
    """Add --device and --json, parse; with the hidden child flag, run ``child(*values)`` and exit instead."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(CHILD, nargs=child_args, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        sys.exit(0)
    return args
