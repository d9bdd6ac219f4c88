"""What the workflow imports when it builds the DAG: the config and its schema checks, the results tree's
paths, run specs, the two registries (every extractor, every model family: what each entry knows, its code named
and imported on use), the tokens extractor's sources, the shared vocabularies and the errors of a wrong setting.

Free of numpy and torch, so that Snakemake plans jobs in its own plain Python (under ``--use-conda`` the heavy
packages live only in the rules' environments) and fast. ``tests/test_plan.py`` imports every module here with
numpy, pandas, h5py and torch blocked. Nothing here imports from the rest of mmsets but ``mmsets.runtime``.

    errors.py    ConfigError, ParamsError, SpecError
    vocab.py     decision rules, class weightings, single-label losses
    layout.py    where the workflow puts things (docs/formats.md)
    spec.py      RunSpec, TrainConfig, CVConfig and the expansion of config.yaml's experiments into runs
    schema.py    JSON Schema mechanics: dotted keys, merging, defaults, command-line strings, errors naming keys
    config.py    the workflow configuration: its checks beyond the schema, a dataset's overrides, the look-ups
                 the workflow plans with (a dataset's runs, extractors, their settings and shards)
    sources.py   the sources of the tokens extractor's modalities and the stores they read
    extractors.py  every extractor by name: its module, params, upstream stores, environment and resources
    families.py  every model family by name: its config, builder, input kind and resources
    dotted.py    nested settings addressed by dotted keys
"""
