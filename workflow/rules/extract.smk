# Feature extractors: one ragged HDF5 store per (dataset, extractor). Each extractor's settings are the
# rule's params, so changing one re-runs that extractor and what depends on it, nothing else. Its threads,
# memory, GPU and environment come from its entry in mmsets/extract/registry.py. An extractor named in
# `shards` runs as K jobs over blocks of the items (extract_shard), gathered into its store (gather).


rule extract:
    input:
        manifest="results/{dataset}/manifest.parquet",
        upstream=extractor_inputs,
    output:
        "results/{dataset}/features/{extractor}.h5",
    wildcard_constraints:
        extractor=unsharded_names(),
    params:
        settings=extractor_params,
    threads: extractor_threads
    resources:
        gpu=extractor_gpu,
        mem_mb=extractor_mem_mb,
    log:
        "results/{dataset}/logs/extract/{extractor}.log",
    benchmark:
        "results/{dataset}/benchmarks/extract/{extractor}.tsv"
    conda:
        extractor_env
    shell:
        "python -m mmsets extract {wildcards.extractor} --manifest {input.manifest:q} --out {output:q} "
        "--params {params.settings:q} 2> {log:q}"


rule extract_shard:
    input:
        manifest="results/{dataset}/manifest.parquet",
        upstream=extractor_inputs,
    output:
        "results/{dataset}/features/shards/{extractor}/{shard}-of-{shards}.h5",
    wildcard_constraints:
        extractor=sharded_names(),
        shard=r"\d+",
        shards=r"\d+",
    params:
        settings=extractor_params,
    threads: extractor_threads
    resources:
        gpu=extractor_gpu,
        mem_mb=extractor_mem_mb,
    log:
        "results/{dataset}/logs/extract/shards/{extractor}/{shard}-of-{shards}.log",
    benchmark:
        "results/{dataset}/benchmarks/extract/shards/{extractor}/{shard}-of-{shards}.tsv"
    conda:
        extractor_env
    shell:
        "python -m mmsets extract {wildcards.extractor} --shard {wildcards.shard}/{wildcards.shards} "
        "--manifest {input.manifest:q} --out {output:q} --params {params.settings:q} 2> {log:q}"


rule gather:
    input:
        manifest="results/{dataset}/manifest.parquet",
        shards=shard_stores,
    output:
        "results/{dataset}/features/{extractor}.h5",
    wildcard_constraints:
        extractor=sharded_names(),
    params:
        shards=shard_count,
    log:
        "results/{dataset}/logs/extract/{extractor}.log",
    benchmark:
        "results/{dataset}/benchmarks/extract/{extractor}.tsv"
    conda:
        extractor_env
    shell:
        "python -m mmsets gather {wildcards.extractor} {input.shards:q} --manifest {input.manifest:q} "
        "--out {output:q} 2> {log:q}"


# Modality erasure (DM2S2 Fig. 2): a token store's test items re-encoded without its k-th modality, for the
# experiment groups with erasure: true. Same extractor, same settings otherwise.
rule erase_tokens:
    input:
        manifest="results/{dataset}/manifest.parquet",
        upstream=erase_inputs,
    output:
        "results/{dataset}/features/erased/{store}/{k}.h5",
    wildcard_constraints:
        store=extractor_names(),
        k=r"\d+",
    params:
        settings=erase_params,
    threads: extractor_threads
    resources:
        gpu=extractor_gpu,
        mem_mb=extractor_mem_mb,
    log:
        "results/{dataset}/logs/extract/erased/{store}/{k}.log",
    benchmark:
        "results/{dataset}/benchmarks/extract/erased/{store}/{k}.tsv"
    conda:
        extractor_env
    shell:
        "python -m mmsets extract {wildcards.store} --manifest {input.manifest:q} --out {output:q} "
        "--params {params.settings:q} 2> {log:q}"
