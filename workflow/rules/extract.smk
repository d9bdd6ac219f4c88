# Feature extractors: one ragged HDF5 store per (dataset, extractor). Each extractor's settings are the
# rule's params, so changing one re-runs that extractor and what depends on it, nothing else.


rule extract:
    input:
        manifest="results/{dataset}/manifest.parquet",
        upstream=extractor_inputs,
    output:
        "results/{dataset}/features/{extractor}.h5",
    wildcard_constraints:
        extractor="|".join(config["extractors"]),
    params:
        settings=extractor_params,
    threads: 2
    resources:
        gpu=config["runtime"]["gpu_jobs"],
        mem_mb=8000,
    log:
        "results/{dataset}/logs/extract/{extractor}.log",
    benchmark:
        "results/{dataset}/benchmarks/extract/{extractor}.tsv"
    conda:
        extractor_env
    shell:
        "python -m mmsets extract {wildcards.extractor} --manifest {input.manifest:q} --out {output:q} "
        "--params {params.settings:q} 2> {log:q}"
