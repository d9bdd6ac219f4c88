# Datasets -> one manifest per dataset: results/{dataset}/manifest.parquet


localrules:
    download_mmimdb,


rule prepare_demo:
    output:
        manifest="results/{dataset}/manifest.parquet",
        images=directory("results/{dataset}/images"),
    wildcard_constraints:
        dataset=datasets_of_kind("demo"),
    params:
        settings=dataset_params,
    log:
        "results/{dataset}/logs/prepare.log",
    benchmark:
        "results/{dataset}/benchmarks/prepare.tsv"
    conda:
        "../../envs/light.yaml"
    shell:
        "python -m mmsets prepare demo --out {output.manifest:q} --images {output.images:q} "
        "--params {params.settings:q} 2> {log:q}"


rule download_mmimdb:
    output:
        "resources/{dataset}/mmimdb.tar.gz",
    wildcard_constraints:
        dataset=datasets_of_kind("mmimdb"),
    params:
        url=lambda w: config["datasets"][w.dataset]["url"],
        sha256=lambda w: config["datasets"][w.dataset]["sha256"] or "",
    log:
        "results/{dataset}/logs/download.log",
    benchmark:
        "results/{dataset}/benchmarks/download.tsv"
    conda:
        "../../envs/light.yaml"
    shell:
        "python -m mmsets download --url {params.url:q} --sha256 {params.sha256:q} --out {output:q} 2> {log:q}"


rule unpack_mmimdb:
    input:
        "resources/{dataset}/mmimdb.tar.gz",
    output:
        directory("resources/{dataset}/unpacked"),
    log:
        "results/{dataset}/logs/unpack.log",
    benchmark:
        "results/{dataset}/benchmarks/unpack.tsv"
    conda:
        "../../envs/light.yaml"
    shell:
        "python -m mmsets unpack --archive {input:q} --out {output:q} 2> {log:q}"


rule prepare_mmimdb:
    input:
        mmimdb_input,
    output:
        manifest="results/{dataset}/manifest.parquet",
    wildcard_constraints:
        dataset=datasets_of_kind("mmimdb"),
    params:
        root=mmimdb_root,
    log:
        "results/{dataset}/logs/prepare.log",
    benchmark:
        "results/{dataset}/benchmarks/prepare.tsv"
    conda:
        "../../envs/light.yaml"
    shell:
        "python -m mmsets prepare mmimdb --root {params.root:q} --out {output.manifest:q} 2> {log:q}"


rule prepare_table:
    input:
        table=lambda w: config["datasets"][w.dataset]["path"],
    output:
        manifest="results/{dataset}/manifest.parquet",
    wildcard_constraints:
        dataset=datasets_of_kind("table"),
    params:
        settings=dataset_params,
    log:
        "results/{dataset}/logs/prepare.log",
    benchmark:
        "results/{dataset}/benchmarks/prepare.tsv"
    conda:
        "../../envs/light.yaml"
    shell:
        "python -m mmsets prepare table --table {input.table:q} --out {output.manifest:q} "
        "--params {params.settings:q} 2> {log:q}"


rule prepare_table_demo:
    output:
        manifest="results/{dataset}/manifest.parquet",
        raw=directory("results/{dataset}/raw"),
    wildcard_constraints:
        dataset=datasets_of_kind("table_demo"),
    params:
        settings=dataset_params,
    log:
        "results/{dataset}/logs/prepare.log",
    benchmark:
        "results/{dataset}/benchmarks/prepare.tsv"
    conda:
        "../../envs/light.yaml"
    shell:
        "python -m mmsets prepare table_demo --images {output.raw:q} --out {output.manifest:q} "
        "--params {params.settings:q} 2> {log:q}"


rule prepare_rehearsal:
    output:
        manifest="results/{dataset}/manifest.parquet",
        images=directory("results/{dataset}/images"),
    wildcard_constraints:
        dataset=datasets_of_kind("rehearsal"),
    params:
        settings=dataset_params,
    log:
        "results/{dataset}/logs/prepare.log",
    benchmark:
        "results/{dataset}/benchmarks/prepare.tsv"
    conda:
        "../../envs/light.yaml"
    shell:
        "python -m mmsets prepare rehearsal --images {output.images:q} --out {output.manifest:q} "
        "--params {params.settings:q} 2> {log:q}"
