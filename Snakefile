# mmsets: raw multimodal items -> feature stores -> set models -> report.
# Usage: snakemake --cores 8 --use-conda results/mmimdb/report.html   (see README.md)

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/demo/report.html",
    default_target: True
