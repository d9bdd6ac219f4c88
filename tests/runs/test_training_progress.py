"""Training says where it is: every epoch's log line has the time per epoch and the ETA."""

import logging
import re

from mmsets.runs.run import train_run


def test_each_epoch_line_has_its_pace_and_the_eta(tiny_run, caplog):
    root = tiny_run.parent
    spec = {"model": "dmms", "features": ["f"], "pooling": "sum", "d_model": 8, "head_hidden": [8],
            "training": {"epochs": 3, "warmup_epochs": 1, "batch_size": 8}}
    with caplog.at_level(logging.INFO, logger="mmsets"):
        train_run(root / "manifest.parquet", {"f": root / "f.h5"}, root / "again", spec)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(lines) == 3
    assert re.match(r"epoch 1/3  train_loss \S+  dev_loss \S+  dev_\w+ \S+  \d+\.\d s/epoch, ETA \d+:\d\d", lines[0])
    assert lines[-1].split("ETA ")[1].startswith("0:00")
