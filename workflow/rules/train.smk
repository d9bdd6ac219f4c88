# Set models: one run directory per (experiment group, feature combination, pooling, variant, seed). A job's
# threads, memory and GPU come from its model family's entry in mmsets/models/registry.py.


rule train:
    input:
        manifest="results/{dataset}/manifest.parquet",
        features=run_features,
    output:
        metrics=report(
            "results/{dataset}/runs/{run}/metrics.json",
            caption="../report/metrics.rst",
            category="Runs",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "run": "{run}"},
        ),
        model="results/{dataset}/runs/{run}/model.pt",
        predictions="results/{dataset}/runs/{run}/predictions.parquet",
        importance="results/{dataset}/runs/{run}/feature_importance.json",
    params:
        spec=run_params,
    threads: run_threads
    resources:
        gpu=run_gpu,
        mem_mb=run_mem_mb,
    log:
        "results/{dataset}/logs/train/{run}.log",
    benchmark:
        "results/{dataset}/benchmarks/train/{run}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m mmsets train --manifest {input.manifest:q} --features-dir results/{wildcards.dataset}/features "
        "--out-dir results/{wildcards.dataset}/runs/{wildcards.run} --spec {params.spec:q} 2> {log:q}"


# DM2S2 Fig. 2 for the runs of experiment groups with erasure: true: the trained run scored on its test
# items re-encoded without each modality in turn.
rule erasure:
    input:
        manifest="results/{dataset}/manifest.parquet",
        model="results/{dataset}/runs/{run}/model.pt",
        store=run_features,
        erased=run_erased_stores,
    output:
        "results/{dataset}/runs/{run}/erasure.json",
    params:
        erased=run_erased_json,
    threads: run_threads
    resources:
        gpu=run_gpu,
        mem_mb=run_mem_mb,
    log:
        "results/{dataset}/logs/erasure/{run}.log",
    benchmark:
        "results/{dataset}/benchmarks/erasure/{run}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m mmsets erase --run-dir results/{wildcards.dataset}/runs/{wildcards.run} "
        "--manifest {input.manifest:q} --store {input.store:q} --erased {params.erased:q} 2> {log:q}"
