"""A failed job's whole log (3,000 lines of a training run) is not printed to the console by the
profiles; Snakemake's error block names the log, whose last line is mmsets' one-line error."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_the_profiles_print_no_whole_log():
    for name in ("default", "slurm"):
        profile = yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())
        assert profile.get("show-failed-logs", False) is False, name


def test_every_rule_that_sends_its_errors_to_a_log_declares_it_so_snakemake_names_it():
    for rules in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for rule in re.split(r"\n(?=rule |checkpoint )", rules.read_text()):
            if "2> {log" in rule:
                assert re.search(r"\n    log:", rule), f"{rules.name}: {rule.splitlines()[0]}"
