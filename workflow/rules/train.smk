# Set models: one run directory per (experiment group, feature combination, pooling, variant, seed). A job's
# threads, memory and GPU come from its model family's entry in mmsets/plan/families.py.


rule train:
    input:
        manifest=manifest_path("{dataset}"),
        features=run_features,
        tuning=run_tuning,
    output:
        metrics=report(
            run_file("{dataset}", "{run}", METRICS),
            caption="../report/metrics.rst",
            category="Runs",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "run": "{run}"},
        ),
        model=run_file("{dataset}", "{run}", MODEL),
        predictions=run_file("{dataset}", "{run}", PREDICTIONS),
        importance=run_file("{dataset}", "{run}", IMPORTANCE),
    wildcard_constraints:
        run=RUN_NAME,
    params:
        spec=run_params,
    threads: run_threads
    resources:
        gpu=run_gpu,
        mem_mb=run_mem_mb,
    log:
        log_path("{dataset}", "train/{run}"),
    benchmark:
        benchmark_path("{dataset}", "train/{run}")
    conda:
        "../../envs/torch.yaml"
    shell:
        f"python -m mmsets train --manifest {{input.manifest:q}} --features-dir {features_dir('{wildcards.dataset}')} "
        f"--out-dir {run_dir('{wildcards.dataset}', '{wildcards.run}')} --spec {{params.spec:q}} 2> {{log:q}}"


# DM2S2 Fig. 2 for the runs of experiment groups with erasure: true: the trained run scored on its test
# items re-encoded without each modality in turn.
rule erasure:
    input:
        manifest=manifest_path("{dataset}"),
        model=run_file("{dataset}", "{run}", MODEL),
        store=run_features,
        erased=run_erased_stores,
    output:
        run_file("{dataset}", "{run}", ERASURE),
    params:
        erased=run_erased_json,
    threads: run_threads
    resources:
        gpu=run_gpu,
        mem_mb=run_mem_mb,
    log:
        log_path("{dataset}", "erasure/{run}"),
    benchmark:
        benchmark_path("{dataset}", "erasure/{run}")
    conda:
        "../../envs/torch.yaml"
    shell:
        f"python -m mmsets erase --run-dir {run_dir('{wildcards.dataset}', '{wildcards.run}')} "
        "--manifest {input.manifest:q} --store {input.store:q} --erased {params.erased:q} 2> {log:q}"


# Robustness to missing modalities, for every trained run: its test items scored with each store's elements
# dropped (vector stores; token sequences are re-encoded by the erasure rule instead), and its test outputs
# split by whether the items have each modality.
rule robustness:
    input:
        manifest=manifest_path("{dataset}"),
        model=run_file("{dataset}", "{run}", MODEL),
        predictions=run_file("{dataset}", "{run}", PREDICTIONS),
        stores=run_features,
    output:
        run_file("{dataset}", "{run}", ROBUSTNESS),
    wildcard_constraints:
        run=RUN_NAME,
    params:
        stores=run_stores_json,
    threads: run_threads
    resources:
        gpu=run_gpu,
        mem_mb=run_mem_mb,
    log:
        log_path("{dataset}", "robustness/{run}"),
    benchmark:
        benchmark_path("{dataset}", "robustness/{run}")
    conda:
        "../../envs/torch.yaml"
    shell:
        f"python -m mmsets robustness --run-dir {run_dir('{wildcards.dataset}', '{wildcards.run}')} "
        "--manifest {input.manifest:q} --stores {params.stores:q} 2> {log:q}"
