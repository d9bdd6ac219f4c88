# Set models: one run directory per (experiment group, feature combination, pooling, seed).


rule train:
    input:
        manifest="results/{dataset}/manifest.parquet",
        features=run_features,
    output:
        metrics="results/{dataset}/runs/{run}/metrics.json",
        model="results/{dataset}/runs/{run}/model.pt",
        predictions="results/{dataset}/runs/{run}/predictions.parquet",
        importance="results/{dataset}/runs/{run}/feature_importance.json",
    params:
        spec=run_params,
    threads: 2
    resources:
        gpu=config["runtime"]["gpu_jobs"],
        mem_mb=8000,
    log:
        "results/{dataset}/logs/train/{run}.log",
    benchmark:
        "results/{dataset}/benchmarks/train/{run}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m mmsets train --manifest {input.manifest:q} --features-dir results/{wildcards.dataset}/features "
        "--out-dir results/{wildcards.dataset}/runs/{wildcards.run} --spec {params.spec:q} 2> {log:q}"
