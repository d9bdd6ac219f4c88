# The HTML report of a dataset: metrics table, feature importance, dataset coverage.


rule report:
    input:
        manifest="results/{dataset}/manifest.parquet",
        runs=report_runs,
        features=report_features,
        erasure=report_erasure,  # read from the run directories
    output:
        report(
            "results/{dataset}/report.html",
            caption="../report/report.rst",
            category="Reports",
            labels={"dataset": "{dataset}"},
        ),
    log:
        "results/{dataset}/logs/report.log",
    benchmark:
        "results/{dataset}/benchmarks/report.tsv"
    conda:
        "../../envs/light.yaml"
    shell:
        "python -m mmsets report --manifest {input.manifest:q} --runs {input.runs:q} --features {input.features:q} "
        "--out {output:q} 2> {log:q}"
