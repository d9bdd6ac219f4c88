# Feature extractors: one ragged HDF5 store per (dataset, extractor). Each extractor's settings are the
# rule's params, so changing one re-runs that extractor and what depends on it, nothing else. Its threads,
# memory, GPU and environment come from its entry in mmsets/plan/extractors.py. An extractor named in
# `shards` runs as K jobs over blocks of the items (extract_shard), gathered into its store (gather).


rule extract:
    input:
        manifest=manifest_path("{dataset}"),
        upstream=extractor_inputs,
    output:
        feature_path("{dataset}", "{extractor}"),
    wildcard_constraints:
        extractor=unsharded_names(),
    params:
        settings=extractor_params,
    threads: extractor_threads
    resources:
        gpu=extractor_gpu,
        mem_mb=extractor_mem_mb,
    log:
        log_path("{dataset}", "extract/{extractor}"),
    benchmark:
        benchmark_path("{dataset}", "extract/{extractor}")
    conda:
        extractor_env
    shell:
        "python -m mmsets extract {wildcards.extractor} --manifest {input.manifest:q} --out {output:q} "
        "--params {params.settings:q} 2> {log:q}"


# Modality erasure (DM2S2 Fig. 2): a token store's test items re-encoded without its k-th modality, for the
# experiment groups with erasure: true. The same extractor; its entry drops the modality from the settings.
use rule extract as erase_tokens with:
    input:
        manifest=manifest_path("{dataset}"),
        upstream=erase_inputs,
    output:
        erased_store_path("{dataset}", "{extractor}", "{k}"),
    wildcard_constraints:
        extractor=extractor_names(),
        k=r"\d+",
    params:
        settings=erase_params,
    log:
        log_path("{dataset}", "extract/erased/{extractor}/{k}"),
    benchmark:
        benchmark_path("{dataset}", "extract/erased/{extractor}/{k}")


rule extract_shard:
    input:
        manifest=manifest_path("{dataset}"),
        upstream=extractor_inputs,
    output:
        shard_path(features_dir("{dataset}"), "{extractor}", "{shard}", "{shards}"),
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
        log_path("{dataset}", "extract/shards/{extractor}/{shard}-of-{shards}"),
    benchmark:
        benchmark_path("{dataset}", "extract/shards/{extractor}/{shard}-of-{shards}")
    conda:
        extractor_env
    shell:
        "python -m mmsets extract {wildcards.extractor} --shard {wildcards.shard}/{wildcards.shards} "
        "--manifest {input.manifest:q} --out {output:q} --params {params.settings:q} 2> {log:q}"


rule gather:
    input:
        manifest=manifest_path("{dataset}"),
        shards=shard_stores,
    output:
        feature_path("{dataset}", "{extractor}"),
    wildcard_constraints:
        extractor=sharded_names(),
    params:
        shards=shard_count,
    log:
        log_path("{dataset}", "extract/{extractor}"),
    benchmark:
        benchmark_path("{dataset}", "extract/{extractor}")
    conda:
        extractor_env
    shell:
        "python -m mmsets gather {wildcards.extractor} {input.shards:q} --manifest {input.manifest:q} "
        "--out {output:q} 2> {log:q}"
