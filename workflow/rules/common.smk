# Shared helpers: config validation, dataset/run look-ups, the CLI prefix every rule uses.
import importlib.util
import json
import os
import re
import shlex
import sys

REPOSITORY = workflow.basedir  # the top-level Snakefile's folder: a checkout, or one `mmsets init` wrote
sys.path.insert(0, REPOSITORY)
# Only mmsets.plan and the registries (no numpy, no torch): under --use-conda, the Python that runs Snakemake has
# Snakemake alone.
from mmsets.plan.config import configured_extractors, dataset_ensembles, dataset_runs, extractor_shards  # noqa: E402
from mmsets.plan.config import dataset_searches, dataset_settings, validate_config  # noqa: E402
from mmsets.plan.tuning import apply_params  # noqa: E402
from mmsets.plan.config import extractor_settings as _extractor_settings  # noqa: E402
from mmsets.plan.extractors import environment, extractor, resources, upstream  # noqa: E402
from mmsets.plan.dotted import set_dotted  # noqa: E402
from mmsets.plan.layout import (  # noqa: E402
    ENSEMBLE_MEMBERS, ERASURE, IMPORTANCE, METRICS, MODEL, PREDICTIONS, ROBUSTNESS, benchmark_path, download_path,
    erased_store_path, feature_path, features_dir, images_dir, log_path, manifest_path, predict_work_dir,
    predictions_path, raw_dir, report_path, results_table_path, run_dir, run_file, runs_dir, shard_path, tune_path,
    unpacked_dir)
from mmsets.plan.errors import MLFLOW_INSTALL_HINT, ConfigError  # noqa: E402
from mmsets.plan.families import family  # noqa: E402

_validated = validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
config.clear()
config.update(_validated)

# Rules call the library's CLI as `python -m mmsets`. The repository goes on PYTHONPATH, so a conda
# environment needs only the dependencies; without conda, the Python that runs Snakemake runs the rules.
# Speed-only settings travel as environment variables, so changing them re-runs nothing.
# Paths are shell-quoted (a checkout under a folder with a space or a quote) and their braces doubled, since
# Snakemake formats the prefix.


def _shell_word(text):
    return shlex.quote(str(text)).replace("{", "{{").replace("}", "}}")


_path = "" if workflow.deployment_settings.deployment_method else f"export PATH={_shell_word(os.path.dirname(sys.executable))}:\"$PATH\"; "
_runtime = ("export OMP_WAIT_POLICY=PASSIVE MMSETS_DEVICE={device} MMSETS_BATCH_SIZE={batch_size} "
            "MMSETS_NUM_WORKERS={num_workers} MMSETS_MAX_PIXELS={max_pixels}; ")
_mlflow = config["tracking"]["mlflow"] or {}
if _mlflow and not workflow.deployment_settings.deployment_method and importlib.util.find_spec("mlflow") is None:
    raise ConfigError(f"tracking.mlflow is set but mlflow is not installed here: {MLFLOW_INSTALL_HINT}")
_tracking = "export MMSETS_MLFLOW_URI={uri} MMSETS_MLFLOW_EXPERIMENT={experiment}; "
shell.prefix(
    f"set -euo pipefail; {_path}export PYTHONPATH={_shell_word(REPOSITORY)}\"${{{{PYTHONPATH:+:$PYTHONPATH}}}}\"; "
    + _runtime.format(**{k: _shell_word("" if v is None else v) for k, v in config["runtime"].items()})
    + _tracking.format(**{k: _shell_word(_mlflow.get(k) or "") for k in ("uri", "experiment")})
)


def extractor_settings(dataset, extractor):
    """An extractor's settings for one dataset: the top-level ones with the dataset's overrides (a
    variant's: its extractor's with its own over them)."""
    return _extractor_settings(config, dataset, extractor)


def _name_pattern(names):
    """A wildcard pattern matching exactly ``names`` (longest first), or nothing."""
    return "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True)) or "(?!x)x"


def _configured_names(sharded=None):
    return {name for dataset in config["datasets"] for name in configured_extractors(config, dataset)
            if sharded is None or (extractor_shards(config, dataset, name) > 1) == sharded}


def extractor_names():
    """A wildcard pattern of every extractor and variant any dataset configures."""
    return _name_pattern(_configured_names())


def sharded_names():
    """The extractors some dataset runs in shards: their store is gathered (in every dataset, K = 1 included)."""
    return _name_pattern(_configured_names(sharded=True))


def unsharded_names():
    return _name_pattern(_configured_names() - _configured_names(sharded=True))


def shard_count(wildcards):
    return extractor_shards(config, wildcards.dataset, wildcards.extractor)


def shard_stores(wildcards):
    count = shard_count(wildcards)
    return [shard_path(features_dir(wildcards.dataset), wildcards.extractor, k, count) for k in range(count)]


def upstream_of(dataset, extractor):
    """The stores an extractor reads: {its param key (dotted when nested): upstream extractor or variant}."""
    return upstream(extractor, extractor_settings(dataset, extractor), configured_extractors(config, dataset))


def extractor_env(wildcards):
    """The extractor's conda environment (envs/torch.yaml or envs/ocr.yaml), relative to the rule files."""
    return f"../../envs/{environment(wildcards.extractor)}.yaml"


def extractor_threads(wildcards):
    return resources(wildcards.extractor).threads


def gpu_slots(needs):
    """GPUs a job asks for (``resources: gpu=``): runtime.gpu_jobs when it runs on a GPU, else none."""
    return config["runtime"]["gpu_jobs"] if needs.gpu else 0


def extractor_gpu(wildcards):
    return gpu_slots(resources(wildcards.extractor))


def extractor_mem_mb(wildcards):
    return resources(wildcards.extractor).mem_mb


def datasets_of_kind(kind):
    return _name_pattern(n for n, d in config["datasets"].items() if d["kind"] == kind)


_NOT_DATA = ("training", "models", "experiments", "extractors", "cv", "shards")  # dataset settings that do not change the manifest


def dataset_params(wildcards):
    settings = {k: v for k, v in dataset_settings(config, wildcards.dataset).items() if k not in _NOT_DATA}
    return json.dumps(settings, sort_keys=True)


def mmimdb_root(wildcards):
    root = dataset_settings(config, wildcards.dataset)["root"]
    return root if root else unpacked_dir(wildcards.dataset)


def mmimdb_input(wildcards):
    root = dataset_settings(config, wildcards.dataset)["root"]
    return [] if root else [unpacked_dir(wildcards.dataset)]


def store_settings(dataset, extractor):
    """The extractor's settings with the paths of the stores it reads filled in."""
    settings = json.loads(json.dumps(extractor_settings(dataset, extractor)))
    for key, upstream in upstream_of(dataset, extractor).items():
        set_dotted(settings, key, feature_path(dataset, upstream))
    return settings


def extractor_params(wildcards):
    return json.dumps(store_settings(wildcards.dataset, wildcards.extractor), sort_keys=True)


def erase_params(wildcards):
    """The token store's own settings without its k-th modality, for the test items only."""
    settings = extractor(wildcards.extractor).erased(store_settings(wildcards.dataset, wildcards.extractor),
                                                     int(wildcards.k))
    return json.dumps(settings, sort_keys=True)


def erase_inputs(wildcards):
    return [feature_path(wildcards.dataset, name) for name in upstream_of(wildcards.dataset, wildcards.extractor).values()]


def extractor_inputs(wildcards):
    return [feature_path(wildcards.dataset, name) for name in upstream_of(wildcards.dataset, wildcards.extractor).values()]


def runs_of(dataset):
    """The dataset's runs by name (mmsets.plan.spec.RunSpec), checked when the config was validated."""
    return dataset_runs(config, dataset)


# A trained run's name ends in -s<seed> (mmsets.plan.spec.RunSpec.name); an ensemble's is its group's name or ends
# in -seeds (mmsets.plan.ensembles), so the train and ensemble rules never claim the same run directory.
RUN_NAME = r"[A-Za-z0-9_-]+-s[0-9]+"
ENSEMBLE_NAME = r"[A-Za-z0-9_]+|[A-Za-z0-9_-]+-seeds"


def ensembles_of(dataset):
    """The dataset's ensembles by name (mmsets.plan.ensembles.EnsembleSpec)."""
    return dataset_ensembles(config, dataset)


def ensemble_spec(wildcards):
    ensembles = ensembles_of(wildcards.dataset)
    if wildcards.ensemble not in ensembles:
        raise ValueError(f"{wildcards.ensemble!r} is not an ensemble of dataset {wildcards.dataset!r}")
    return ensembles[wildcards.ensemble]


def run_spec(wildcards):
    runs = runs_of(wildcards.dataset)
    if wildcards.run not in runs:
        raise ValueError(f"run {wildcards.run!r} is not an experiment of dataset {wildcards.dataset!r}")
    return runs[wildcards.run]


def run_params(wildcards):
    """The run's spec; a tuned run's with its search's best settings over it (read once the tune checkpoint
    has written them: run_tuning makes the DAG wait for it)."""
    spec = run_spec(wildcards).to_dict()
    for path in run_tuning(wildcards):
        with open(path) as result:
            spec = apply_params(spec, json.load(result)["best_params"])
    return json.dumps(spec, sort_keys=True)


def searches_of(dataset):
    """The dataset's tuning searches by name (mmsets.plan.tuning.SearchSpec)."""
    return dataset_searches(config, dataset)


def search_spec(wildcards):
    searches = searches_of(wildcards.dataset)
    if wildcards.search not in searches:
        raise ValueError(f"{wildcards.search!r} is not a tuning search of dataset {wildcards.dataset!r}")
    return searches[wildcards.search]


def report_tuning(wildcards):
    """Every search's result: the report's tuning section."""
    return [tune_path(wildcards.dataset, name) for name in searches_of(wildcards.dataset)]


def run_tuning(wildcards):
    """A tuned run's search result, once its checkpoint is done; nothing for an untuned run."""
    for name, search in searches_of(wildcards.dataset).items():
        if wildcards.run in search.tuned_runs:
            return [checkpoints.tune.get(dataset=wildcards.dataset, search=name).output.result]
    return []


def run_threads(wildcards):
    return family(run_spec(wildcards).model).resources.threads * run_spec(wildcards).training.processes


def run_gpu(wildcards):
    return gpu_slots(family(run_spec(wildcards).model).resources) * run_spec(wildcards).training.processes


def run_mem_mb(wildcards):
    return family(run_spec(wildcards).model).resources.mem_mb


def run_features(wildcards):
    return [feature_path(wildcards.dataset, name) for name in run_spec(wildcards).features]


def report_features(wildcards):
    """Every store a run reads, and the stores those were made from (OCR words under OCR text, ...)."""
    names = {f for spec in runs_of(wildcards.dataset).values() for f in spec.features}
    while True:
        more = {u for name in names for u in upstream_of(wildcards.dataset, name).values()} - names
        if not more:
            break
        names |= more
    names = sorted(names)
    return [feature_path(wildcards.dataset, name) for name in names]


def predict_items(wildcards):
    items = config["predict"].get(wildcards.name)
    if items is None:
        raise ValueError(f"predict.{wildcards.name} is not set: name the items (a table or an MM-IMDb-layout "
                         f"folder) under predict in the config")
    return items


def report_runs(wildcards):
    """Every run's metrics, then every ensemble's."""
    names = [*runs_of(wildcards.dataset), *ensembles_of(wildcards.dataset)]
    return [run_file(wildcards.dataset, name, METRICS) for name in names]


def erasure_runs(dataset):
    """The runs of experiment groups with erasure: true."""
    return [name for name, spec in runs_of(dataset).items() if config["experiments"][spec.group].get("erasure")]


def erased_stores(dataset, store):
    """{modality: the token store re-encoded without it} of one token store."""
    modalities = extractor(store).modalities(extractor_settings(dataset, store))
    return {m: erased_store_path(dataset, store, k) for k, m in enumerate(modalities)}


def run_erased_stores(wildcards):
    return list(erased_stores(wildcards.dataset, run_spec(wildcards).features[0]).values())


def run_erased_json(wildcards):
    return json.dumps(erased_stores(wildcards.dataset, run_spec(wildcards).features[0]), sort_keys=True)


def report_erasure(wildcards):
    return [run_file(wildcards.dataset, run, ERASURE) for run in erasure_runs(wildcards.dataset)]


def run_stores_json(wildcards):
    """{name: store path} of the stores a run reads."""
    return json.dumps({name: feature_path(wildcards.dataset, name) for name in run_spec(wildcards).features},
                      sort_keys=True)


def report_robustness(wildcards):
    """Every trained run's scores without each modality and by coverage (ensembles have no model to score)."""
    return [run_file(wildcards.dataset, run, ROBUSTNESS) for run in runs_of(wildcards.dataset)]
