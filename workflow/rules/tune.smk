# Tuning with Optuna (mmsets/plan/tuning.py): one search per configuration of a group with a tune section. A
# checkpoint, since its result is what the tuned runs train with: their params are read from it once it is written.
# The study's SQLite file is kept beside the result, so a search that was interrupted resumes where it stopped.


checkpoint tune:
    input:
        manifest=manifest_path("{dataset}"),
        features=lambda w: [feature_path(w.dataset, name) for name in search_spec(w).run.features],
    output:
        result=tune_path("{dataset}", "{search}"),
    params:
        spec=lambda w: json.dumps(search_spec(w).to_dict(), sort_keys=True),
        storage=lambda w: tune_path(w.dataset, w.search, ".db"),
    threads: lambda w: family(search_spec(w).run.model).resources.threads
    resources:
        gpu=lambda w: gpu_slots(family(search_spec(w).run.model).resources),
        mem_mb=lambda w: family(search_spec(w).run.model).resources.mem_mb,
    log:
        log_path("{dataset}", "tune/{search}"),
    benchmark:
        benchmark_path("{dataset}", "tune/{search}")
    conda:
        "../../envs/torch.yaml"
    shell:
        f"python -m mmsets tune --manifest {{input.manifest:q}} --features-dir {features_dir('{wildcards.dataset}')} "
        "--out {output.result:q} --storage {params.storage:q} --spec {params.spec:q} 2> {log:q}"
