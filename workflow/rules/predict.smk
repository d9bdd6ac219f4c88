# New items scored by a trained run (config: predict: {name: items}): the items are extracted with the
# settings the run's stores record, into the prediction's own folder, then scored and explained.


rule predict:
    input:
        model=run_file("{dataset}", "{run}", MODEL),
        new_items=predict_items,
    output:
        parquet=predictions_path("{dataset}", "{name}", "{run}", ".parquet"),
        csv=predictions_path("{dataset}", "{name}", "{run}", ".csv"),
    wildcard_constraints:
        name=r"[A-Za-z0-9_]+",
    threads: 2
    resources:
        gpu=lambda wildcards: config["runtime"]["gpu_jobs"],
    log:
        log_path("{dataset}", "predict/{name}/{run}"),
    benchmark:
        benchmark_path("{dataset}", "predict/{name}/{run}")
    conda:
        "../../envs/torch.yaml"
    shell:
        f"python -m mmsets predict --run-dir {run_dir('{wildcards.dataset}', '{wildcards.run}')} "
        "--items {input.new_items:q} --out {output.parquet:q} "
        f"--work-dir {predict_work_dir('{wildcards.dataset}', '{wildcards.name}', '{wildcards.run}')} 2> {{log:q}}"
