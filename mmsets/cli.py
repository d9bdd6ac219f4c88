"""Command-line interface: one subcommand per workflow step; the Snakemake rules call these.

    mmsets prepare <kind> ...        build results/{dataset}/manifest.parquet (demo, mmimdb, table, ...)
    mmsets download / unpack         fetch and unpack the official MM-IMDb archive
    mmsets extract <extractor> ...   write results/{dataset}/features/<extractor>.h5
    mmsets tune ...                  search a configuration's settings with Optuna (resumable)
    mmsets train ...                 train one run, write its run directory
    mmsets evaluate ...              re-score a trained run's checkpoint on a split
    mmsets erase ...                 score a token-sequence run without each modality (DM2S2 Fig. 2)
    mmsets robustness ...            score a run without each modality and by coverage (missing modalities)
    mmsets predict ...               score new items with a trained run
    mmsets report ...                write the HTML report
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("mmsets")


def _json_arg(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


# What each dataset kind needs on the command line, and the table settings without a default
_PREPARE_NEEDS = {"demo": "images", "table_demo": "images", "rehearsal": "images", "table": "table", "mmimdb": "root"}
_TABLE_KEYS = {"label_column": "the column to learn (to score items without labels: mmsets predict)",
               "task": "multilabel, binary, multiclass or regression",
               "id_column": "the column of unique item ids (null: items numbered by line)",
               "image_column": "the column of image paths (null: no images)"}


def cmd_prepare(args: argparse.Namespace) -> None:
    params = {k: v for k, v in args.params.items() if k not in ("kind", "path")}
    needed = _PREPARE_NEEDS[args.kind]
    if getattr(args, needed) is None:
        raise ValueError(f"prepare {args.kind} needs --{needed}")
    if args.kind == "table":
        missing = [k for k in _TABLE_KEYS if k not in params]
        if missing:
            raise ValueError("prepare table: --params lacks " + "; ".join(f"{k!r} ({_TABLE_KEYS[k]})" for k in missing))
    if args.kind == "demo":
        from mmsets.data.demo import write_demo

        manifest = write_demo(args.images, args.out, **params)
    elif args.kind == "table":
        from mmsets.data.table import write_table_manifest

        manifest = write_table_manifest(args.table, args.out, **params)
    elif args.kind == "table_demo":
        from mmsets.data.table_demo import write_table_demo

        manifest = write_table_demo(args.images, args.out, **params)
    elif args.kind == "rehearsal":
        from mmsets.data.rehearsal import write_rehearsal

        manifest = write_rehearsal(args.images, args.out, **params)
    else:
        from mmsets.data.manifest import write_manifest
        from mmsets.data.mmimdb import load_mmimdb

        manifest = load_mmimdb(args.root)
        write_manifest(manifest, args.out)
    log.info("manifest %s: %d items", args.out, len(manifest))


def cmd_download(args: argparse.Namespace) -> None:
    from mmsets.data.mmimdb import download_mmimdb

    download_mmimdb(args.out, url=args.url, sha256=args.sha256 or None)


def cmd_unpack(args: argparse.Namespace) -> None:
    from mmsets.data.mmimdb import unpack_mmimdb

    unpack_mmimdb(args.archive, args.out)


def cmd_extract(args: argparse.Namespace) -> None:
    from mmsets.extract import run_extractor
    from mmsets.extract.weights import check_weights
    from mmsets.runtime import Runtime

    check_weights([args.params], f"extractor {args.extractor}")
    runtime = Runtime.from_env(device=args.device, batch_size=args.batch_size, num_workers=args.num_workers,
                               threads=args.threads, max_pixels=args.max_pixels)
    if args.threads is None and runtime.threads == 0:  # OMP_NUM_THREADS unset too: every core
        runtime = runtime.replace(threads=len(os.sched_getaffinity(0)))
    if runtime.threads > 0:  # --threads 0: torch's own default
        import torch

        torch.set_num_threads(runtime.threads)
    shard = None
    if args.shard is not None:
        from mmsets.extract.shards import parse_shard

        shard = parse_shard(args.shard)
    run_extractor(args.extractor, args.manifest, args.out, args.params, runtime, shard)


def cmd_gather(args: argparse.Namespace) -> None:
    from mmsets.extract.shards import gather_shards

    summary = gather_shards(args.extractor, args.manifest, args.shards, args.out)
    log.info("%s: %d items from %d shards", args.out, summary["items"], len(args.shards))


def cmd_train(args: argparse.Namespace) -> None:
    from mmsets.plan.layout import store_path
    from mmsets.runs.distributed import process_group
    from mmsets.runs.run import train_run
    from mmsets.runs.tracking import track_finished_run

    spec = dict(args.spec)
    processes = int(spec.get("training", {}).get("processes", 1))
    if processes > 1 and "WORLD_SIZE" not in os.environ:  # start again under torchrun, once per process
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        log.info("training in %d data-parallel processes: %s", processes, " ".join(torchrun))
        sys.stderr.flush()
        os.execv(sys.executable, [*torchrun, "-m", "mmsets", *args.argv])
    spec["training"] = {**spec.get("training", {}), "device": args.device}
    features = {name: store_path(args.features_dir, name) for name in spec.get("features", [])}
    with process_group(args.device):  # under torchrun (training.processes > 1): the data-parallel group
        written = train_run(args.manifest, features, args.out_dir, spec)
    if written:  # the first process of a data-parallel run wrote it
        track_finished_run(args.out_dir)


def cmd_tune(args: argparse.Namespace) -> None:
    from mmsets.plan.layout import store_path
    from mmsets.runs.tune import search

    spec = json.loads(json.dumps(args.spec))
    spec["run"]["training"] = {**spec["run"].get("training", {}), "device": args.device}
    features = {name: store_path(args.features_dir, name) for name in spec["run"].get("features", [])}
    result = search(args.manifest, features, args.out, args.storage, spec)
    log.info("search %s: best dev %s %.4f after %d trials, %s", result["search"], result["metric"],
             result["best_value"], result["n_trials"], result["best_params"])


def cmd_evaluate(args: argparse.Namespace) -> None:
    from mmsets.runs.evaluate import evaluate_run

    metrics = evaluate_run(args.run_dir, args.manifest, args.features_dir, split=args.split, device=args.device)
    print(json.dumps(metrics, indent=2, sort_keys=True))


def cmd_ensemble(args: argparse.Namespace) -> None:
    from mmsets.plan.ensembles import EnsembleSpec
    from mmsets.runs.ensemble import build_ensemble
    from mmsets.runs.tracking import track_finished_run

    record = build_ensemble(EnsembleSpec.from_dict(args.spec), args.runs_dir, args.out_dir)
    log.info("ensemble %s of %s: dev %s, test %s", record.run,
             [c["configuration"] for c in record.extras["ensemble"]["configurations"]], record.dev, record.test)
    track_finished_run(args.out_dir)


def cmd_init(args: argparse.Namespace) -> None:
    from mmsets.deploy import init_workflow

    written = init_workflow(args.dir, force=args.force)
    print(f"wrote {', '.join(p.name for p in written)} into {args.dir}; then, there: "
          f"snakemake --cores 2 results/demo/report.html")


def cmd_track(args: argparse.Namespace) -> None:
    from mmsets.runs.tracking import MlflowTarget, log_run

    target = MlflowTarget(args.mlflow_uri, args.experiment) if args.mlflow_uri else MlflowTarget.from_env()
    if target is None:
        raise ValueError("no MLflow store: pass --mlflow-uri (e.g. sqlite:///mlflow.db) or set MMSETS_MLFLOW_URI")
    for run_dir in args.run_dirs:
        print(f"{run_dir}\t{log_run(run_dir, target, artifacts=not args.no_artifacts)}")


def cmd_erase(args: argparse.Namespace) -> None:
    from mmsets.runs.erasure import erasure

    result = erasure(args.run_dir, args.manifest, args.store, args.erased, device=args.device)
    for modality, row in result["erased"].items():
        log.info("without %s: %s", modality, "  ".join(f"{k} {v:+.4f}" for k, v in row["delta"].items()))


def cmd_robustness(args: argparse.Namespace) -> None:
    from mmsets.runs.robustness import robustness

    result = robustness(args.run_dir, args.manifest, args.stores, device=args.device)
    for modality, row in result["removed"].items():
        log.info("without %s: %s", modality, "  ".join(f"{k} {v:+.4f}" for k, v in row["delta"].items()))
    for modality, sides in result["coverage"].items():
        log.info("items with / without %s: %d / %d", modality, sides["with"]["n_items"], sides["without"]["n_items"])


def cmd_predict(args: argparse.Namespace) -> None:
    from mmsets.predict import load_run, write_predictions
    from mmsets.runtime import Runtime

    run = load_run(args.run_dir, args.features_dir)
    runtime = Runtime.from_env(device=args.device, batch_size=args.batch_size, num_workers=args.num_workers,
                               threads=args.threads, max_pixels=args.max_pixels)
    frame = run.predict(Path(args.items), work_dir=args.work_dir, runtime=runtime, device=runtime.device)
    for name, summary in run.extraction.items():
        log.info("%s: %d items, %d with elements, skipped %s", name, summary["items"], summary["with_elements"],
                 summary["skipped"] or "none")
    for path in write_predictions(frame, args.out):
        log.info("wrote %s (%d items)", path, len(frame))


def cmd_report(args: argparse.Namespace) -> None:
    from mmsets.plan.layout import store_name
    from mmsets.report import build_report

    run_dirs = list(dict.fromkeys(str(Path(p).parent) if p.endswith(".json") else p for p in args.runs))
    features = {store_name(p): p for p in args.features}
    build_report(args.manifest, run_dirs, features, args.out, title=args.title, csv_path=args.csv)


class _HelpWith(argparse.Action):
    """-h / --help that adds an epilog computed only then (it imports the extractors or the models)."""

    def __init__(self, option_strings: list[str], dest: str, epilog: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show this help and exit")
        self.epilog = epilog

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option_string: Any = None) -> None:
        parser.epilog = self.epilog()
        parser.print_help()
        parser.exit()


def _fields(cls: type, skip: tuple[str, ...] = ()) -> str:
    import dataclasses

    def default(f: dataclasses.Field) -> Any:
        if f.default is not dataclasses.MISSING:
            return f.default
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else "required"

    return ", ".join(f"{f.name}={json.dumps(default(f), default=str)}" for f in dataclasses.fields(cls)
                     if f.name not in skip)


def _extract_epilog() -> str:
    import importlib
    import textwrap

    from mmsets.plan.extractors import EXTRACTORS

    lines = ["extractors and their --params keys (defaults; a variant name@x takes its extractor's keys):"]
    for name, entry in EXTRACTORS.items():
        cls = getattr(importlib.import_module(entry.module), entry.params)
        text = _fields(cls, tuple(entry.store_params))
        lines += textwrap.wrap(f"{name}: {text}", 110, initial_indent="  ", subsequent_indent="      ")
    lines.append("docs: docs/formats.md (stores), config.yaml and workflow/schemas/config.schema.yaml (meanings)")
    return "\n".join(lines)


def _train_epilog() -> str:
    import textwrap

    from mmsets.plan.families import FAMILIES
    from mmsets.plan.spec import RUNTIME_TRAINING_KEYS, CVConfig, TrainConfig

    lines = ["--spec keys: model (one of " + ", ".join(FAMILIES) + "), features (store names in --features-dir),",
             "the model's settings, training {...}, cv {...}; e.g.",
             '  {"model": "dmms", "features": ["image", "text"], "pooling": "max", "training": {"epochs": 30}}']
    lines += textwrap.wrap("training: " + _fields(TrainConfig, RUNTIME_TRAINING_KEYS[1:]), 110,
                           initial_indent="  ", subsequent_indent="      ")
    lines += textwrap.wrap("cv: " + _fields(CVConfig), 110, initial_indent="  ", subsequent_indent="      ")
    lines.append("model settings (the rest of each config comes from the data):")
    for name, fam in FAMILIES.items():
        lines += textwrap.wrap(f"{name}: " + _fields(fam.config, tuple(set(_data_fields(fam)))), 110,
                               initial_indent="  ", subsequent_indent="      ")
    return "\n".join(lines)


def _data_fields(fam: Any) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(fam.config) if f.name not in fam.settings]


def build_parser() -> argparse.ArgumentParser:
    from mmsets import __version__

    parser = argparse.ArgumentParser(prog="mmsets", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"mmsets {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="build a dataset's manifest")
    p.add_argument("kind", choices=["demo", "mmimdb", "table", "table_demo", "rehearsal"])
    p.add_argument("--out", required=True, help="manifest.parquet to write")
    p.add_argument("--images", help="demo, table_demo, rehearsal: folder for the generated images")
    p.add_argument("--table", help="table: the CSV or JSON Lines file")
    p.add_argument("--root", help="mmimdb: unpacked MM-IMDb folder")
    p.add_argument("--params", type=_json_arg, default={}, help="dataset settings as JSON")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("download", help="download the MM-IMDb archive (resumable)")
    p.add_argument("--url", required=True)
    p.add_argument("--sha256", default="")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("unpack", help="unpack the MM-IMDb archive")
    p.add_argument("--archive", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_unpack)

    p = sub.add_parser("extract", help="run one feature extractor into a ragged HDF5 store", add_help=False,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-h", "--help", action=_HelpWith, epilog=_extract_epilog)
    p.add_argument("extractor", help="its name (listed below) or name@variant")
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--params", type=_json_arg, default={}, help="extractor settings as JSON")
    p.add_argument("--shard", metavar="I/K", help="extract only the I-th of K blocks of the items (0 <= I < K); "
                   "`mmsets gather` joins the K stores")
    _add_runtime(p)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("gather", help="join the stores of an extractor's shards 0..K-1 into one store")
    p.add_argument("extractor", help="the extractor (or name@variant) the shards ran")
    p.add_argument("shards", nargs="+", help="the shard stores, in order 0..K-1")
    p.add_argument("--manifest", required=True, help="the manifest the shards were cut from")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_gather)

    p = sub.add_parser("train", help="train one run", add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-h", "--help", action=_HelpWith, epilog=_train_epilog)
    p.add_argument("--manifest", required=True)
    p.add_argument("--features-dir", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--spec", type=_json_arg, required=True, help="run spec as JSON (its keys below)")
    p.add_argument("--device", default=os.environ.get("MMSETS_DEVICE", "auto"))
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="search a configuration's settings with Optuna; an interrupted search resumes")
    p.add_argument("--manifest", required=True)
    p.add_argument("--features-dir", required=True)
    p.add_argument("--out", required=True, help="the search's JSON (docs/formats.md)")
    p.add_argument("--storage", required=True, help="the Optuna study's SQLite file, kept so that a rerun resumes")
    p.add_argument("--spec", type=_json_arg, required=True, help="search spec as JSON (mmsets.plan.tuning)")
    p.add_argument("--device", default=os.environ.get("MMSETS_DEVICE", "auto"))
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("ensemble", help="combine trained runs into an ensemble run directory (nothing is trained)")
    p.add_argument("--runs-dir", required=True, help="the folder holding the member run directories")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--spec", type=_json_arg, required=True, help="ensemble spec as JSON (mmsets.plan.ensembles)")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("init", help="write a runnable workflow folder (Snakefile, config.yaml, workflow/, envs/, "
                                    "profiles/) from this mmsets")
    p.add_argument("dir")
    p.add_argument("--force", action="store_true", help="replace workflow files already there")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("track", help="log finished run directories to an MLflow tracking store")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--mlflow-uri", help="sqlite:///mlflow.db, a folder or a server (default: $MMSETS_MLFLOW_URI)")
    p.add_argument("--experiment", help="the MLflow experiment (default: each run's dataset)")
    p.add_argument("--no-artifacts", action="store_true", help="log params and metrics only, not the run's files")
    p.set_defaults(func=cmd_track)

    p = sub.add_parser("evaluate", help="re-score a trained run on a split")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--features-dir", required=True)
    p.add_argument("--split", default="test", choices=["train", "dev", "test"])
    p.add_argument("--device", default=os.environ.get("MMSETS_DEVICE", "auto"))
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("erase", help="score a token-sequence run on its test items re-encoded without each modality")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--store", required=True, help="the run's token store")
    p.add_argument("--erased", type=_json_arg, required=True,
                   help='JSON {modality: token store re-encoded without it}, e.g. {"ocr": "erased/tokens/2.h5"}')
    p.add_argument("--device", default=os.environ.get("MMSETS_DEVICE", "auto"))
    p.set_defaults(func=cmd_erase)

    p = sub.add_parser("robustness", help="score a run on its test items without each modality and split by "
                                          "whether they have it")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--stores", type=_json_arg, required=True,
                   help='JSON {name: path} of the stores the run reads, e.g. {"image": "features/image.h5"}')
    p.add_argument("--device", default=os.environ.get("MMSETS_DEVICE", "auto"))
    p.set_defaults(func=cmd_robustness)

    p = sub.add_parser("predict", help="score new items with a trained run (extracted as its training items were)")
    p.add_argument("--run-dir", required=True, help="a trained run directory (its model.pt)")
    p.add_argument("--items", required=True,
                   help="a CSV or JSON Lines table (id, image, the run's fields by name) or an MM-IMDb-layout folder")
    p.add_argument("--out", required=True, help="predictions.parquet to write (and a .csv beside it)")
    p.add_argument("--work-dir", help="keep the items' manifest and stores here (default: a temporary folder)")
    p.add_argument("--features-dir", help="the training stores, for runs that do not record how they were made")
    _add_runtime(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("report", help="write the HTML report")
    p.add_argument("--manifest", required=True)
    p.add_argument("--runs", nargs="*", default=[], help="run directories or their metrics.json")
    p.add_argument("--features", nargs="*", default=[], help="feature stores (name = file stem)")
    p.add_argument("--title")
    p.add_argument("--out", required=True)
    p.add_argument("--csv", help="also write the results table (one row per configuration and per run) here")
    p.set_defaults(func=cmd_report)
    return parser


def _add_runtime(p: argparse.ArgumentParser) -> None:
    # Left unset here, Runtime.from_env takes them from the environment: the workflow sets them there without
    # making them rule params (and Snakemake exports a job's threads as OMP_NUM_THREADS).
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps (default: $MMSETS_DEVICE, else auto)")
    p.add_argument("--batch-size", type=int, help="items or crops at once (default: $MMSETS_BATCH_SIZE, else 32)")
    p.add_argument("--num-workers", type=int, help="image decoding processes (default: $MMSETS_NUM_WORKERS, else 2)")
    p.add_argument("--threads", type=int,
                   help="CPU threads; 0: torch's default (default: $OMP_NUM_THREADS, else every core)")
    p.add_argument("--max-pixels", type=int,
                   help="skip images with more pixels as too_large (default: $MMSETS_MAX_PIXELS, else Pillow's limit)")


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    # SLURM and Snakemake stop a job with SIGTERM: exit through Python, so an extraction commits what it
    # holds and leaves its partial store whole for the rerun (mmsets.extract.resume.resumable)
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    import signal

    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    from mmsets.progress import quiet_library_bars

    args = build_parser().parse_args(argv)
    quiet_library_bars()
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (ValueError, KeyError, OSError, RuntimeError, ArithmeticError) as err:
        log.debug("traceback", exc_info=True)
        print(f"mmsets {args.command}: error: {err}", file=sys.stderr)
        return 1
    except MemoryError:  # its message is empty
        log.debug("traceback", exc_info=True)
        print(f"mmsets {args.command}: error: out of memory (MemoryError); lower runtime.batch_size or "
              f"runtime.max_pixels, or give the job more memory", file=sys.stderr)
        return 1
    return 0
