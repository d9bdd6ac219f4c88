"""The command line: errors as one line naming what to give, help that lists what can be given."""

import pytest

from mmsets import __version__
from mmsets.cli import main


@pytest.mark.parametrize("argv, message", [
    (["prepare", "mmimdb", "--out", "m.parquet"], "prepare mmimdb needs --root"),
    (["prepare", "table", "--out", "x"], "prepare table needs --table"),
    (["prepare", "demo", "--out", "x"], "prepare demo needs --images"),
    (["prepare", "table", "--out", "x", "--table", "t.csv", "--params", '{"task": "binary"}'],
     "--params lacks 'label_column' (the column to learn (to score items without labels: mmsets predict))"),
    (["predict", "--run-dir", "nowhere", "--items", "x.csv", "--out", "p.parquet"], "nowhere: no model.pt"),
])
def test_errors_are_one_line_naming_what_is_missing(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"mmsets {__version__}"


def test_extract_help_lists_every_extractor_and_its_params(capsys):
    from mmsets.plan.extractors import EXTRACTORS

    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    out = capsys.readouterr().out
    for name in EXTRACTORS:
        assert f"  {name}: " in out
    assert "min_face_size=20" in out and "objects_store" not in out  # store paths are the workflow's


def test_train_help_lists_the_spec_keys(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for key in ("class_weighting=", "decision=", "folds=5", "dmms: d_model=1024", "dm2s2: head_hidden=[256, 128]",
                "intra=true"):
        assert key in out
