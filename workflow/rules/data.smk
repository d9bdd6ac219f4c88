# Datasets -> one manifest per dataset: results/{dataset}/manifest.parquet (paths: mmsets/plan/layout.py)


localrules:
    download_mmimdb,


rule prepare_demo:
    output:
        manifest=manifest_path("{dataset}"),
        images=directory(images_dir("{dataset}")),
    wildcard_constraints:
        dataset=datasets_of_kind("demo"),
    params:
        settings=dataset_params,
    log:
        log_path("{dataset}", "prepare"),
    benchmark:
        benchmark_path("{dataset}", "prepare")
    conda:
        "../../envs/light.yaml"
    shell:
        "python -m mmsets prepare demo --out {output.manifest:q} --images {output.images:q} "
        "--params {params.settings:q} 2> {log:q}"


rule download_mmimdb:
    output:
        download_path("{dataset}"),
    wildcard_constraints:
        dataset=datasets_of_kind("mmimdb"),
    params:
        url=lambda w: config["datasets"][w.dataset]["url"],
        sha256=lambda w: config["datasets"][w.dataset]["sha256"] or "",
    log:
        log_path("{dataset}", "download"),
    benchmark:
        benchmark_path("{dataset}", "download")
    conda:
        "../../envs/light.yaml"
    shell:
        "python -m mmsets download --url {params.url:q} --sha256 {params.sha256:q} --out {output:q} 2> {log:q}"


rule unpack_mmimdb:
    input:
        download_path("{dataset}"),
    output:
        directory(unpacked_dir("{dataset}")),
    log:
        log_path("{dataset}", "unpack"),
    benchmark:
        benchmark_path("{dataset}", "unpack")
    conda:
        "../../envs/light.yaml"
    shell:
        "python -m mmsets unpack --archive {input:q} --out {output:q} 2> {log:q}"


rule prepare_mmimdb:
    input:
        mmimdb_input,
    output:
        manifest=manifest_path("{dataset}"),
    wildcard_constraints:
        dataset=datasets_of_kind("mmimdb"),
    params:
        root=mmimdb_root,
    log:
        log_path("{dataset}", "prepare"),
    benchmark:
        benchmark_path("{dataset}", "prepare")
    conda:
        "../../envs/light.yaml"
    shell:
        "python -m mmsets prepare mmimdb --root {params.root:q} --out {output.manifest:q} 2> {log:q}"


rule prepare_table:
    input:
        table=lambda w: config["datasets"][w.dataset]["path"],
    output:
        manifest=manifest_path("{dataset}"),
    wildcard_constraints:
        dataset=datasets_of_kind("table"),
    params:
        settings=dataset_params,
    log:
        log_path("{dataset}", "prepare"),
    benchmark:
        benchmark_path("{dataset}", "prepare")
    conda:
        "../../envs/light.yaml"
    shell:
        "python -m mmsets prepare table --table {input.table:q} --out {output.manifest:q} "
        "--params {params.settings:q} 2> {log:q}"


rule prepare_table_demo:
    output:
        manifest=manifest_path("{dataset}"),
        raw=directory(raw_dir("{dataset}")),
    wildcard_constraints:
        dataset=datasets_of_kind("table_demo"),
    params:
        settings=dataset_params,
    log:
        log_path("{dataset}", "prepare"),
    benchmark:
        benchmark_path("{dataset}", "prepare")
    conda:
        "../../envs/light.yaml"
    shell:
        "python -m mmsets prepare table_demo --images {output.raw:q} --out {output.manifest:q} "
        "--params {params.settings:q} 2> {log:q}"


rule prepare_rehearsal:
    output:
        manifest=manifest_path("{dataset}"),
        images=directory(images_dir("{dataset}")),
    wildcard_constraints:
        dataset=datasets_of_kind("rehearsal"),
    params:
        settings=dataset_params,
    log:
        log_path("{dataset}", "prepare"),
    benchmark:
        benchmark_path("{dataset}", "prepare")
    conda:
        "../../envs/light.yaml"
    shell:
        "python -m mmsets prepare rehearsal --images {output.images:q} --out {output.manifest:q} "
        "--params {params.settings:q} 2> {log:q}"
