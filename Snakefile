# mmsets: raw multimodal items -> feature stores -> set models -> report.
# Usage: snakemake --cores 8 --use-conda results/mmimdb/report.html   (see README.md)
# The settings are config.yaml's; the rules, schemas and report captions live under workflow/.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/ensemble.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/demo/report.html",
    default_target: True
