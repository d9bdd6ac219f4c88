"""The benchmarks still run against the library's current API (their figures are not checked: no timing
thresholds in tests; BENCHMARKS.md records them)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script, args", [
    ("bench_pooling.py", ["--batch", "4", "--dim", "8", "--max-set", "3"]),
    ("bench_store.py", ["--items", "20", "--dim", "8"]),
    ("bench_extract.py", ["--items", "2", "--device", "cpu"]),
    ("bench_train.py", ["--items", "20", "--tokens", "10", "--device", "cpu"]),
    ("bench_pipeline.py", ["--items", "4", "--workers", "0", "--extractors", "image,text", "--device", "cpu"]),
])
def test_benchmark_runs_and_prints_ratios(script, args):
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ratio" in proc.stdout or re.search(r"\d\.\d+x", proc.stdout), proc.stdout
