"""The rehearsal of the real job, tiny: every extractor with the papers' architectures at random weights on a
generated MM-IMDb-shaped dataset, then DMMS, late fusion, LightGBM and DM2S2, through the real DAG."""

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pandas as pd
import pytest

from workdirs import workdir_config

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
# store -> the width of the paper's architecture that made it
WIDTHS = {"image": 2048, "bbox": 2048, "text": 1024, "ocr_text": 1024, "tokens": 1024, "faces": 512}


@pytest.mark.slow

def test_tiny_rehearsal_runs_the_whole_dag_with_the_papers_architectures(tmp_path):
    shutil.copy(ROOT / "config.yaml", workdir_config(tmp_path))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(tmp_path),
           "--cores", "2", "--configfile", str(ROOT / "workflow/configs/rehearsal.yaml"),
           str(ROOT / "tests/configs/rehearsal_tiny.yaml"), "--", "results/rehearsal/report.html"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-6000:]
    results = tmp_path / "results" / "rehearsal"
    for name, width in WIDTHS.items():
        with h5py.File(results / "features" / f"{name}.h5") as store:
            assert store.attrs["dim"] == width, name
            assert '"weights": "random"' in store.attrs["params"], name
    runs = sorted(p.name for p in (results / "runs").iterdir())
    assert runs == sorted(["tiny_sets-all-max-dmms-s0", "tiny_sets-all-late_fusion-s0", "tiny_sets-all-lightgbm-s0",
                           "tiny_tokens-tokens-s0"])
    for run in runs:
        assert (results / "runs" / run / "metrics.json").exists()
    # every job left its wall time and peak memory (the rehearsal's figures)
    benchmarks = list((results / "benchmarks").rglob("*.tsv"))
    assert len(benchmarks) >= 1 + 9 + len(runs) + 1
    table = pd.read_csv(benchmarks[0], sep="\t")
    assert {"s", "max_rss"} <= set(table.columns)
    assert "tiny_tokens-tokens-s0" in (results / "report.html").read_text()
