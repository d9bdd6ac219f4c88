"""The Snakemake DAG end to end on a small config, and what a changed setting re-runs."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from workdirs import workdir_config

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
SMALL = ROOT / "tests" / "configs" / "small.yaml"


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
           "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def planned_jobs(proc: subprocess.CompletedProcess) -> list[str]:
    """(rule, wildcards) of every job a dry run lists."""
    text = proc.stdout + proc.stderr
    jobs = []
    for block in re.split(r"\n(?=rule |localrule |checkpoint )", text):
        head = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        if head:
            wildcards = re.search(r"wildcards: (.*)", block)
            jobs.append(f"{head.group(1)}[{wildcards.group(1) if wildcards else ''}]")
    return jobs


def extract_commands(proc: subprocess.CompletedProcess) -> dict[str, list[str]]:
    """The shell commands of the extractions a dry run with -p prints, by extractor (with its variant)."""
    commands = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        if found := re.search(r"-m mmsets extract (\S+) ", line):
            commands.setdefault(found.group(1), []).append(line)
    return commands


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("dag")
    config = yaml.safe_load(SMALL.read_text())
    config["tracking"] = {"mlflow": {"uri": "sqlite:///results/mlflow.db"}}  # every run also logged to MLflow
    workdir_config(work).write_text(yaml.safe_dump(config))
    snakemake(work, "results/demo/report.html")
    return work


@pytest.mark.slow
def test_small_dag_ends_in_a_report(workdir):
    report = (workdir / "results/demo/report.html").read_text()
    runs = sorted(p.name for p in (workdir / "results/demo/runs").iterdir())
    assert runs == ["dmms-image-max-s0", "dmms-image-sum-s0", "dmms-image_text-max-s0", "dmms-image_text-sum-s0"]
    for run in runs:
        assert run in report
        assert (workdir / "results/demo/runs" / run / "model.pt").exists()
    table = pd.read_csv(workdir / "results/demo/results.csv")  # the results table beside the report
    assert sorted(table.loc[table["kind"] == "run", "run"]) == runs
    for rule_log in ["prepare.log", "extract/image.log", "extract/text.log", "report.log"]:
        assert (workdir / "results/demo/logs" / rule_log).exists()
    assert (workdir / "results/demo/benchmarks/extract/image.tsv").exists()
    assert not list(workdir.rglob("*.partial"))


@pytest.mark.slow
def test_snakemakes_own_report_carries_the_report_and_every_runs_metrics(workdir):
    import zipfile

    snakemake(workdir, "results/demo/report.html", "--report", "snakemake-report.zip")
    with zipfile.ZipFile(workdir / "snakemake-report.zip") as archive:
        names = archive.namelist()
        ours = [n for n in names if "/data/raw/" in n and n.endswith("/report.html")]  # stored under a hash
        assert len(ours) == 1
        assert archive.read(ours[0]) == (workdir / "results/demo/report.html").read_bytes()
    assert sum(n.endswith("metrics.json") for n in names) == 4


@pytest.mark.slow
def test_nothing_to_do_after_a_finished_run(workdir):
    proc = snakemake(workdir, "-n", "results/demo/report.html")
    assert planned_jobs(proc) == []


@pytest.mark.slow
def test_make_demos_snakemake_command_parses_and_targets_the_report(workdir):
    if shutil.which("make") is None:
        pytest.skip("needs make")
    shown = subprocess.run(["make", "-s", "-n", "-o", "setup-demo", "demo", "BIN=bin"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout
    (line,) = [line for line in shown.splitlines() if line.startswith("bin/snakemake ")]
    args = shlex.split(line)[1:]
    assert "results/demo/report.html" in args
    assert planned_jobs(snakemake(workdir, "-n", *args)) == []  # the same arguments: parsed, and nothing left to do


@pytest.mark.slow
def test_sharded_extraction_gathers_the_unsharded_store_and_k_reruns_only_its_shards(workdir, tmp_path):
    from mmsets.store import RaggedStore

    config = yaml.safe_load(SMALL.read_text())
    config["shards"] = {"image": 3}
    config["datasets"]["demo"]["shards"] = {"text": 2}
    workdir_config(tmp_path).write_text(yaml.safe_dump(config))
    stores = ["results/demo/features/image.h5", "results/demo/features/text.h5"]
    jobs = planned_jobs(snakemake(tmp_path, "-n", *stores))
    assert sorted(j for j in jobs if j.startswith(("extract", "gather"))) == [
        "extract_shard[dataset=demo, extractor=image, shard=0, shards=3]",
        "extract_shard[dataset=demo, extractor=image, shard=1, shards=3]",
        "extract_shard[dataset=demo, extractor=image, shard=2, shards=3]",
        "extract_shard[dataset=demo, extractor=text, shard=0, shards=2]",
        "extract_shard[dataset=demo, extractor=text, shard=1, shards=2]",
        "gather[dataset=demo, extractor=image]", "gather[dataset=demo, extractor=text]"]
    snakemake(tmp_path, *stores)
    for store in stores:
        with RaggedStore(workdir / store) as one, RaggedStore(tmp_path / store) as gathered:
            assert gathered.ids == one.ids
            np.testing.assert_array_equal(gathered.offsets, one.offsets)
            np.testing.assert_allclose(gathered.file["data"][:].astype(np.float32),
                                       one.file["data"][:].astype(np.float32), atol=2e-3)
            assert gathered.summary["items"] == one.summary["items"] and len(gathered.summary["shards"]) > 1

    # another K re-runs that extractor's shards and gather only
    jobs = planned_jobs(snakemake(tmp_path, "-n", *stores, "--config", "shards={image: 2}"))
    assert sorted(jobs) == ["extract_shard[dataset=demo, extractor=image, shard=0, shards=2]",
                            "extract_shard[dataset=demo, extractor=image, shard=1, shards=2]",
                            "gather[dataset=demo, extractor=image]"]


def test_data_parallel_runs_ask_for_their_processes(tmp_path):
    config = yaml.safe_load(SMALL.read_text())
    config["datasets"]["demo"]["training"]["processes"] = 2
    config["runtime"]["gpu_jobs"] = 1
    workdir_config(tmp_path).write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "-n", "-p", "results/demo/report.html")
    text = proc.stdout + proc.stderr
    trains = [block for block in re.split(r"\n(?=rule |localrule )", text) if re.match(r"(local)?rule train:", block)]
    assert len(trains) == 4
    for block in trains:
        assert "python -m mmsets train" in block and '"processes": 2' in block  # it starts torchrun itself
        assert re.search(r"resources: .*gpu=2", block)


def test_sharding_an_unshardable_or_unknown_extractor_fails_the_dry_run(tmp_path):
    config = yaml.safe_load(SMALL.read_text())
    for shards, message in [({"categorical": 2}, "shards.categorical: extractor 'categorical' cannot be sharded"),
                            ({"imgae": 2}, "shards.imgae: not an extractor of dataset 'demo'"),
                            ({"image": 0}, "shards.image")]:
        workdir_config(tmp_path).write_text(yaml.safe_dump({**config, "shards": shards}))
        proc = snakemake(tmp_path, "-n", check=False)
        assert proc.returncode != 0 and message in proc.stdout + proc.stderr, shards


@pytest.mark.slow
def test_text_setting_reruns_text_and_its_dependents_only(workdir):
    proc = snakemake(workdir, "-n", "results/demo/report.html", "--config", "extractors={text: {max_length: 32}}")
    jobs = planned_jobs(proc)
    assert "extract[dataset=demo, extractor=text]" in jobs
    assert "extract[dataset=demo, extractor=image]" not in jobs
    assert "prepare_demo[dataset=demo]" not in jobs
    trained = sorted(j for j in jobs if j.startswith("train["))
    assert trained == ["train[dataset=demo, run=dmms-image_text-max-s0]", "train[dataset=demo, run=dmms-image_text-sum-s0]"]
    assert "report[dataset=demo]" in jobs


@pytest.mark.slow
def test_runtime_and_tracking_settings_rerun_nothing(workdir):
    proc = snakemake(workdir, "-n", "results/demo/report.html", "--config", "runtime={batch_size: 4, num_workers: 1}")
    assert planned_jobs(proc) == []
    proc = snakemake(workdir, "-n", "results/demo/report.html", "--config", "tracking={mlflow: null}")
    assert planned_jobs(proc) == []


@pytest.mark.slow
def test_every_trained_run_is_logged_to_the_configured_mlflow_store(workdir):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("demo")  # the dataset's name: the config names none
    logged = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(logged) == sorted(p.name for p in (workdir / "results/demo/runs").iterdir())
    for name, run in logged.items():
        assert run.data.params["model"] == "dmms" and "test.f1_micro" in run.data.metrics
        assert "metrics.json" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_bad_config_value_stops_with_the_key(tmp_path):
    config = yaml.safe_load(SMALL.read_text())
    config["extractors"]["image"]["image_size"] = 4
    (workdir_config(tmp_path)).write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "extractors.image.image_size" in proc.stdout + proc.stderr


def test_misspelled_model_setting_fails_the_dry_run_naming_the_key(tmp_path):
    shutil.copy(ROOT / "config.yaml", workdir_config(tmp_path))
    proc = snakemake(tmp_path, "-n", "results/mmimdb/report.html", "--config", "models={dm2s2: {intra_atention: false}}",
                     check=False)
    assert proc.returncode != 0 and planned_jobs(proc) == []
    assert "models.dm2s2: unknown key(s) ('intra_atention'" in proc.stdout + proc.stderr


def test_unknown_image_model_fails_the_dry_run_naming_the_key(tmp_path):
    shutil.copy(ROOT / "config.yaml", workdir_config(tmp_path))
    proc = snakemake(tmp_path, "-n", "results/demo/report.html", "--config", "extractors={image: {model: resnet50}}",
                     check=False)
    assert proc.returncode != 0 and planned_jobs(proc) == []
    assert "extractors.image.model: 'resnet50' is not efficientnet_lite0" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_checkout_under_a_path_with_a_space_and_a_quote_runs(tmp_path):
    """Rule shells quote the repository's path: PYTHONPATH and the rules' commands survive `'` and ` `."""
    checkout = tmp_path / "my projects" / "it's here"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(".venv*", ".git", "results", ".snakemake",
                                                                   "__pycache__", "*.egg-info"))
    work = tmp_path / "work dir"
    shutil.copy(SMALL, workdir_config(work))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(checkout / "Snakefile"),
           "--directory", str(work), "--cores", "2", "results/demo/features/text.h5"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "results/demo/features/text.h5").is_file()


def test_lint_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--snakefile", str(SNAKEFILE),
                           "--directory", str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_binary_cross_validation_and_regression_tables_end_to_end(tmp_path):
    shutil.copy(ROOT / "tests" / "configs" / "table.yaml", workdir_config(tmp_path))
    snakemake(tmp_path, "results/parallel_demo/report.html", "results/appeal_demo/report.html")
    binary = json.loads((tmp_path / "results/parallel_demo/runs/table-image_text-sum-dmms-s0/metrics.json").read_text())
    assert binary["task"] == "binary" and len(binary["folds"]) == 5
    assert {"accuracy", "auc"} <= set(binary["test"]) and {"accuracy", "auc"} <= set(binary["test_std"])
    fine = binary["test"]["per_fine_class_accuracy"]  # Ads-Parallelity's three classes, mean over folds
    assert set(fine) == {"non-parallel", "parallel-equivalent", "parallel-non-equivalent"}
    assert "Per fine-grained class accuracy" in (tmp_path / "results/parallel_demo/report.html").read_text()
    predictions = pd.read_parquet(tmp_path / "results/parallel_demo/runs/table-image_text-sum-dmms-s0/predictions.parquet")
    predictions = predictions[predictions["split"] == "test"]
    assert sorted(predictions["fold"].unique()) == [0, 1, 2, 3, 4] and predictions["id"].is_unique
    assert len(predictions) == 100
    regression = json.loads((tmp_path / "results/appeal_demo/runs/table-image_text-logreg-s0/metrics.json").read_text())
    assert regression["task"] == "regression" and {"rmse", "mape"} <= set(regression["test"])
    for dataset in ("parallel_demo", "appeal_demo"):
        assert "table-image_text-sum-dmms" in (tmp_path / f"results/{dataset}/report.html").read_text()


def test_extractor_variants_get_their_own_stores_and_read_their_upstream_variant(tmp_path):
    """OCR backends side by side (DM2S2 Tables 1-2): ocr@easyocr feeds ocr_text@easyocr and tokens@easyocr."""
    config = yaml.safe_load(SMALL.read_text())
    config["extractors"].update({"ocr": {"backend": "tesseract"}, "ocr@easyocr": {"backend": "easyocr"},
                                 "ocr_text@easyocr": {}, "tokens": {"modalities": ["text:plot", "ocr"]},
                                 "tokens@easyocr": {}})
    config["experiments"] = {"ocr": {"model": "dm2s2", "features": {"tesseract": ["tokens"],
                                                                    "easyocr": ["tokens@easyocr"]}, "seeds": [0]},
                             "ocr_sets": {"model": "dmms", "features": {"easyocr": ["image", "ocr_text@easyocr"]},
                                          "pooling": ["max"], "seeds": [0]}}
    (workdir_config(tmp_path)).write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "-n", "-p", "results/demo/report.html")
    jobs = planned_jobs(proc)
    for name in ("ocr", "ocr@easyocr", "tokens", "tokens@easyocr", "ocr_text@easyocr", "image"):
        assert f"extract[dataset=demo, extractor={name}]" in jobs
    assert "extract[dataset=demo, extractor=ocr_text]" not in jobs
    commands = extract_commands(proc)
    easy_tokens = commands["tokens@easyocr"][0]
    assert "features/ocr@easyocr.h5" in easy_tokens and '\\"backend\\"' not in easy_tokens
    assert "features/ocr@easyocr.h5" in commands["ocr_text@easyocr"][0]
    assert '"backend": "easyocr"' in commands["ocr@easyocr"][0]
    assert sorted(j for j in jobs if j.startswith("train[")) == [
        "train[dataset=demo, run=ocr-easyocr-s0]", "train[dataset=demo, run=ocr-tesseract-s0]",
        "train[dataset=demo, run=ocr_sets-easyocr-max-s0]"]


def test_paper_config_plans_the_papers_inputs_and_tables(tmp_path):
    shutil.copy(ROOT / "config.yaml", workdir_config(tmp_path))
    proc = snakemake(tmp_path, "-n", "-p", "--configfile", str(ROOT / "workflow" / "configs" / "paper.yaml"), "--",
                     "results/mmimdb/report.html")
    jobs = planned_jobs(proc)
    extractors = sorted(j.split("extractor=")[1].rstrip("]") for j in jobs if j.startswith("extract["))
    assert extractors == sorted(["image", "bbox", "objects", "faces", "text", "ocr", "ocr@tesseract", "ocr@easyocr",
                                 "ocr_text", "labels", "tokens", "tokens@tesseract", "tokens@easyocr"])
    text = extract_commands(proc)["text"][0]
    assert '"segment": "none"' in text and '"max_length": 512' in text and '"pooling": "cls"' in text
    runs = [j for j in jobs if j.startswith("train[")]
    assert "train[dataset=mmimdb, run=dm2s2_ocr-easyocr-both-s2]" in runs
    assert "train[dataset=mmimdb, run=dmms_table3-i_t_bbox-min-s0]" in runs
    train = next(line for line in (proc.stdout + proc.stderr).splitlines()
                 if "train" in line and "--out-dir results/mmimdb/runs/dm2s2_table3-tokens-both-s0" in line)
    assert '"class_weighting": "inv"' in train  # DM2S2's recipe: 1/N_k


def test_the_mpnet_config_changes_the_text_encoders_only(tmp_path):
    shutil.copy(ROOT / "config.yaml", workdir_config(tmp_path))
    proc = snakemake(tmp_path, "-n", "-p", "--configfile", str(ROOT / "workflow" / "configs" / "mpnet.yaml"), "--",
                     "results/mmimdb/report.html")
    commands = extract_commands(proc)
    text_encoders = ("text", "ocr_text", "tokens")
    for extractor in text_encoders:
        assert all('"model": "mpnet-base"' in line for line in commands[extractor]), extractor
    assert '"model": "efficientnet_lite0"' in commands["image"][0]
    others = [line for extractor, lines in commands.items() if extractor not in text_encoders for line in lines]
    assert others and not any("mpnet" in line for line in others)


def test_erasure_reencodes_the_test_items_without_each_modality(tmp_path):
    config = yaml.safe_load(SMALL.read_text())
    config["extractors"]["tokens"] = {"modalities": ["text:title", "text:plot"]}
    config["experiments"] = {"dm2s2": {"model": "dm2s2", "features": {"tokens": ["tokens"]}, "seeds": [0, 1],
                                       "erasure": True}}
    (workdir_config(tmp_path)).write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "-n", "-p", "results/demo/report.html")
    jobs = planned_jobs(proc)
    assert sorted(j for j in jobs if j.startswith(("erase_tokens", "erasure"))) == [
        "erase_tokens[dataset=demo, extractor=tokens, k=0]", "erase_tokens[dataset=demo, extractor=tokens, k=1]",
        "erasure[dataset=demo, run=dm2s2-tokens-s0]", "erasure[dataset=demo, run=dm2s2-tokens-s1]"]
    commands = (proc.stdout + proc.stderr).splitlines()
    without_title = next(line for line in commands if "--out results/demo/features/erased/tokens/0.h5" in line)
    assert '"modalities": ["text:plot"]' in without_title and '"splits": ["test"]' in without_title
    erase = next(line for line in commands if "mmsets erase" in line and "dm2s2-tokens-s0" in line)
    assert '"text:title": "results/demo/features/erased/tokens/0.h5"' in erase

    config["experiments"]["dm2s2"]["model"] = "dmms"  # erasure re-encodes token sequences only
    (workdir_config(tmp_path)).write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "-n", "results/demo/report.html", check=False)
    assert proc.returncode != 0 and "experiments.dm2s2.erasure" in proc.stdout + proc.stderr


def test_every_trained_run_is_scored_without_each_modality_before_the_report(tmp_path):
    shutil.copy(SMALL, workdir_config(tmp_path))
    proc = snakemake(tmp_path, "-n", "-p", "results/demo/report.html")
    runs = sorted(j.split("run=")[1].rstrip("]") for j in planned_jobs(proc) if j.startswith("train["))
    assert sorted(j for j in planned_jobs(proc) if j.startswith("robustness[")) == [
        f"robustness[dataset=demo, run={run}]" for run in runs]
    text = proc.stdout + proc.stderr
    command = next(line for line in text.splitlines() if "mmsets robustness" in line and "dmms-image-max-s0" in line)
    assert """--stores '{"image": "results/demo/features/image.h5"}'""" in command
    report = next(block for block in re.split(r"\n(?=rule |localrule )", text) if block.startswith("rule report:"))
    for run in runs:
        assert f"results/demo/runs/{run}/robustness.json" in report


def test_a_changed_split_setting_reruns_prepare(tmp_path):
    shutil.copy(SMALL, workdir_config(tmp_path))
    snakemake(tmp_path, "results/demo/manifest.parquet")
    assert planned_jobs(snakemake(tmp_path, "-n", "results/demo/manifest.parquet")) == []
    for change in ("datasets={demo: {split_seed: 1}}", "datasets={demo: {split_fractions: [0.5, 0.25, 0.25]}}"):
        proc = snakemake(tmp_path, "-n", "results/demo/manifest.parquet", "--config", change)
        assert planned_jobs(proc) == ["prepare_demo[dataset=demo]"], change


def test_ensembles_are_planned_after_their_members_and_read_by_the_report(tmp_path):
    config = yaml.safe_load(SMALL.read_text())
    config["experiments"] = {
        "dmms": {"model": "dmms", "features": {"image_text": ["image", "text"]}, "pooling": ["max", "sum"],
                 "seeds": [0, 1]},
        "baselines": {"model": "logreg", "features": {"image_text": ["image", "text"]}, "seed_ensemble": False},
        "best": {"model": "ensemble"},
    }
    workdir_config(tmp_path).write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "-n", "-p", "results/demo/report.html")
    jobs = planned_jobs(proc)
    assert sorted(j for j in jobs if j.startswith("ensemble")) == [
        "ensemble[dataset=demo, ensemble=best]", "ensemble[dataset=demo, ensemble=dmms-image_text-max-seeds]",
        "ensemble[dataset=demo, ensemble=dmms-image_text-sum-seeds]"]
    assert len([j for j in jobs if j.startswith("train[")]) == 5
    text = proc.stdout + proc.stderr
    best = next(line for line in text.splitlines() if "mmsets ensemble" in line and "runs/best" in line)
    assert '"members": "best_per_family"' in best and '"weights": "fitted"' in best
    assert "baselines-image_text-s0" in best  # every candidate: the job chooses on dev
    report = next(line for line in text.splitlines() if "mmsets report" in line)
    assert "results/demo/runs/best/metrics.json" in report

    config["experiments"]["best"]["features"] = {"x": ["image"]}  # an ensemble trains nothing
    workdir_config(tmp_path).write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "-n", "results/demo/report.html", check=False)
    assert proc.returncode != 0 and "experiments.best" in proc.stdout + proc.stderr


def test_a_tuned_group_plans_its_search_before_its_tuned_runs(tmp_path):
    config = yaml.safe_load(SMALL.read_text())
    space = {"d_model": {"low": 16, "high": 64, "log": True}, "dropout": {"low": 0.0, "high": 0.5},
             "lr": {"low": 1e-4, "high": 1e-2, "log": True}, "pooling": {"choices": ["max", "sum"]}}
    config["experiments"] = {"dmms": {"model": "dmms", "features": {"image_text": ["image", "text"]},
                                      "pooling": ["max", "sum"], "seeds": [0, 1],
                                      "tune": {"space": space, "trials": 3}}}
    workdir_config(tmp_path).write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "-n", "-p", "results/demo/report.html")
    jobs = planned_jobs(proc)
    assert [j for j in jobs if j.startswith("tune")] == ["tune[dataset=demo, search=dmms-image_text]"]
    trained = sorted(j for j in jobs if j.startswith("train["))
    assert trained == [f"train[dataset=demo, run=dmms-image_text-{c}-s{s}]" for c in ("max", "sum", "tuned")
                       for s in (0, 1)]
    text = proc.stdout + proc.stderr
    assert "mmsets tune" in text and "results/demo/tune/dmms-image_text.db" in text
    # The tuned runs' spec waits for the search's result: the checkpoint re-plans them once it is written.
    tuned = [line for line in text.splitlines() if "mmsets train" in line and "-tuned-s" in line]
    assert len(tuned) == 2 and all("<TBD>" in line for line in tuned)
    assert "ensemble[dataset=demo, ensemble=dmms-image_text-tuned-seeds]" in jobs

    config["experiments"]["dmms"]["tune"]["space"]["hidden"] = {"low": 1, "high": 2}
    workdir_config(tmp_path).write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "-n", "results/demo/report.html", check=False)
    assert proc.returncode != 0 and "experiments.dmms.tune.space.hidden" in proc.stdout + proc.stderr


def test_an_own_table_with_the_shipped_config_plans_the_jobs_its_fields_need(tmp_path):
    """The README's own-data recipe: the shipped config, a table's config file beside it, one target."""
    shutil.copy(ROOT / "config.yaml",
                workdir_config(tmp_path))
    (tmp_path / "movies.csv").write_text("id,poster,plot,drama\n1,1.jpeg,A plot.,yes\n2,2.jpeg,Another.,no\n")
    own = {"datasets": {"movies": {"kind": "table", "path": str(tmp_path / "movies.csv"), "task": "binary",
                                   "id_column": "id", "image_column": "poster", "text_columns": ["plot"],
                                   "label_column": "drama"}}}
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(own))
    proc = snakemake(tmp_path, "-n", "results/movies/report.html", "--configfile", str(tmp_path / "my.yaml"))
    jobs = Counter(job.split("[")[0] for job in planned_jobs(proc))
    # 3 combinations (image, text, both) x (DMMS max, DMMS sum, logistic regression) x 3 seeds
    assert jobs == {"prepare_table": 1, "extract": 2, "train": 27, "robustness": 27, "ensemble": 9 + 1, "report": 1}
    assert {"extract[dataset=movies, extractor=image]", "extract[dataset=movies, extractor=text]"} <= set(
        planned_jobs(proc))
