# Shared helpers: config validation, dataset/run look-ups, the CLI prefix every rule uses.
import json
import os
import sys

sys.path.insert(0, workflow.basedir)
from mmsets.config import expand_runs, validate_config  # noqa: E402

_validated = validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
config.clear()
config.update(_validated)

# Rules call the library's CLI as `python -m mmsets`. The repository goes on PYTHONPATH, so a conda
# environment needs only the dependencies; without conda, the Python that runs Snakemake runs the rules.
# Speed-only settings travel as environment variables, so changing them re-runs nothing.
_path = "" if workflow.deployment_settings.deployment_method else f"export PATH={os.path.dirname(sys.executable)}:$PATH; "
_runtime = "export OMP_WAIT_POLICY=PASSIVE MMSETS_DEVICE={device} MMSETS_BATCH_SIZE={batch_size} MMSETS_NUM_WORKERS={num_workers}; "
shell.prefix(
    f"set -euo pipefail; {_path}export PYTHONPATH={workflow.basedir}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    + _runtime.format(**config["runtime"])
)

# Extractors whose input is another extractor's store (filled in as extractors are added).
EXTRACTOR_INPUTS = {}


def datasets_of_kind(kind):
    names = [n for n, d in config["datasets"].items() if d["kind"] == kind]
    return "|".join(names) if names else "(?!x)x"


def dataset_params(wildcards):
    settings = {k: v for k, v in config["datasets"][wildcards.dataset].items() if k not in ("training", "models")}
    return json.dumps(settings, sort_keys=True)


def mmimdb_root(wildcards):
    root = config["datasets"][wildcards.dataset]["root"]
    return root if root else f"resources/{wildcards.dataset}/unpacked"


def mmimdb_input(wildcards):
    root = config["datasets"][wildcards.dataset]["root"]
    return [] if root else [f"resources/{wildcards.dataset}/unpacked"]


def extractor_params(wildcards):
    return json.dumps(config["extractors"][wildcards.extractor], sort_keys=True)


def extractor_inputs(wildcards):
    upstream = EXTRACTOR_INPUTS.get(wildcards.extractor, [])
    return [f"results/{wildcards.dataset}/features/{name}.h5" for name in upstream]


def runs_of(dataset):
    return expand_runs(config, dataset)


def run_spec(wildcards):
    runs = runs_of(wildcards.dataset)
    if wildcards.run not in runs:
        raise ValueError(f"run {wildcards.run!r} is not an experiment of dataset {wildcards.dataset!r}")
    return runs[wildcards.run]


def run_features(wildcards):
    features = run_spec(wildcards)["features"]
    return [f"results/{wildcards.dataset}/features/{name}.h5" for name in features]


def report_features(wildcards):
    names = sorted({f for spec in runs_of(wildcards.dataset).values() for f in spec["features"]})
    return [f"results/{wildcards.dataset}/features/{name}.h5" for name in names]


def report_runs(wildcards):
    return [f"results/{wildcards.dataset}/runs/{run}/metrics.json" for run in runs_of(wildcards.dataset)]
