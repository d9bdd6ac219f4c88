# The HTML report of a dataset: metrics table, feature importance, dataset coverage.


rule report:
    input:
        manifest=manifest_path("{dataset}"),
        runs=report_runs,
        features=report_features,
        erasure=report_erasure,  # read from the run directories
        robustness=report_robustness,  # read from the run directories
        tuning=report_tuning,  # read from results/{dataset}/tune
    output:
        html=report(
            report_path("{dataset}"),
            caption="../report/report.rst",
            category="Reports",
            labels={"dataset": "{dataset}"},
        ),
        table=results_table_path("{dataset}"),
    log:
        log_path("{dataset}", "report"),
    benchmark:
        benchmark_path("{dataset}", "report")
    conda:
        "../../envs/light.yaml"
    shell:
        "python -m mmsets report --manifest {input.manifest:q} --runs {input.runs:q} --features {input.features:q} "
        "--out {output.html:q} --csv {output.table:q} 2> {log:q}"
