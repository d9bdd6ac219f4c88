"""Issue 24, case 10: a failed job's whole log (3,000 lines of a training run) is not printed to the console by
the default profile; Snakemake's error block names the log, whose last line is mmsets' one-line error."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_the_default_profile_prints_no_whole_log():
    profile = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    assert profile.get("show-failed-logs", False) is False


def test_every_rule_that_sends_its_errors_to_a_log_declares_it_so_snakemake_names_it():
    for rules in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for rule in re.split(r"\n(?=rule |checkpoint )", rules.read_text()):
            if "2> {log" in rule:
                assert re.search(r"\n    log:", rule), f"{rules.name}: {rule.splitlines()[0]}"
