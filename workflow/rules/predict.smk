# New items scored by a trained run (config: predict: {name: items}): the items are extracted with the
# settings the run's stores record, into the prediction's own folder, then scored and explained.


rule predict:
    input:
        model="results/{dataset}/runs/{run}/model.pt",
        new_items=predict_items,
    output:
        parquet="results/{dataset}/predictions/{name}/{run}.parquet",
        csv="results/{dataset}/predictions/{name}/{run}.csv",
    wildcard_constraints:
        name=r"[A-Za-z0-9_]+",
    threads: 2
    resources:
        gpu=lambda wildcards: config["runtime"]["gpu_jobs"],
    log:
        "results/{dataset}/logs/predict/{name}/{run}.log",
    benchmark:
        "results/{dataset}/benchmarks/predict/{name}/{run}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m mmsets predict --run-dir results/{wildcards.dataset}/runs/{wildcards.run} --items {input.new_items:q} "
        "--out {output.parquet:q} --work-dir results/{wildcards.dataset}/predictions/{wildcards.name}/work/{wildcards.run} "
        "2> {log:q}"
