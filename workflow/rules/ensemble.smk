# Ensembles (mmsets/plan/ensembles.py): a seed ensemble per configuration with several seeds, and the groups with
# model: ensemble. Nothing is trained: the job reads its members' metrics and dev/test predictions, fits the
# weights and the decision on dev, and writes a run directory of its own.


rule ensemble:
    input:
        metrics=lambda w: [run_file(w.dataset, run, METRICS) for run in ensemble_spec(w).runs],
        predictions=lambda w: [run_file(w.dataset, run, PREDICTIONS) for run in ensemble_spec(w).runs],
    output:
        metrics=report(
            run_file("{dataset}", "{ensemble}", METRICS),
            caption="../report/metrics.rst",
            category="Runs",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "run": "{ensemble}"},
        ),
        predictions=run_file("{dataset}", "{ensemble}", PREDICTIONS),
        members=run_file("{dataset}", "{ensemble}", ENSEMBLE_MEMBERS),
    wildcard_constraints:
        ensemble=ENSEMBLE_NAME,
    params:
        spec=lambda w: json.dumps(ensemble_spec(w).to_dict(), sort_keys=True),
    log:
        log_path("{dataset}", "ensemble/{ensemble}"),
    benchmark:
        benchmark_path("{dataset}", "ensemble/{ensemble}")
    conda:
        "../../envs/torch.yaml"
    shell:
        f"python -m mmsets ensemble --runs-dir {runs_dir('{wildcards.dataset}')} "
        f"--out-dir {run_dir('{wildcards.dataset}', '{wildcards.ensemble}')} --spec {{params.spec:q}} 2> {{log:q}}"
