"""Every run records how it was made: code, packages, machine and the settings of the stores it read."""

import importlib.metadata
import platform
import subprocess

import mmsets
from mmsets.io import read_json
from mmsets.runs.provenance import git_state, package_versions, provenance
from mmsets.runs.record import RunRecord


def git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_git_state_names_the_commit_and_whether_tracked_files_changed(tmp_path):
    (tmp_path / "a.txt").write_text("one\n")
    git("init", "-q", cwd=tmp_path)
    git("add", "a.txt", cwd=tmp_path)
    git("commit", "-q", "-m", "first", cwd=tmp_path)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert git_state(tmp_path) == (head, False)
    (tmp_path / "untracked.txt").write_text("not part of the commit\n")
    assert git_state(tmp_path) == (head, False)
    (tmp_path / "a.txt").write_text("two\n")
    assert git_state(tmp_path) == (head, True)


def test_outside_a_repository_there_is_no_commit(tmp_path):
    assert git_state(tmp_path) == (None, None)


def test_provenance_names_code_packages_and_machine():
    record = provenance("cpu")
    assert record["mmsets"] == mmsets.__version__
    assert record["python"] == platform.python_version()
    assert record["device"] == "cpu" and record["gpu"] is None
    assert record["cpu_count"] >= 1 and record["memory_gb"] > 0
    assert record["packages"]["numpy"] == importlib.metadata.version("numpy")
    assert record["packages"]["torch"] == importlib.metadata.version("torch")
    assert "not-a-package" not in package_versions(("numpy", "not-a-package"))


def test_a_trained_run_records_its_provenance_and_its_stores_settings(tiny_run):
    trained = tiny_run
    raw = read_json(trained / "metrics.json")
    prov = raw["provenance"]
    assert prov["mmsets"] == mmsets.__version__ and prov["device"] == "cpu"
    assert set(prov) >= {"git_commit", "git_dirty", "python", "platform", "cpu", "cpu_count", "memory_gb", "gpu",
                         "created", "packages"}
    assert raw["stores"]["f"]["params"] == {"width": 4}
    record = RunRecord.read(trained)
    assert record.provenance == prov and record.stores == raw["stores"]
    assert "provenance" not in record.extras
