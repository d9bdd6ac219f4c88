"""What the workflow imports when it builds the DAG: the config and its schema checks, the results tree's
paths, run specs, the tokens extractor's sources, the shared vocabularies and the errors of a wrong setting.

Free of numpy and torch, so that Snakemake plans jobs in its own plain Python (under ``--use-conda`` the heavy
packages live only in the rules' environments) and fast. ``tests/test_plan.py`` imports every module here, and
the two registries (``mmsets.extract.registry``, ``mmsets.models.registry``), with numpy and torch blocked.

    errors.py    ConfigError, ParamsError, SpecError
    vocab.py     decision rules, class weightings, single-label losses
    layout.py    where the workflow puts things (docs/formats.md)
    spec.py      RunSpec, TrainConfig, CVConfig and the expansion of config.yaml's experiments into runs
    config.py    the workflow configuration: schema validation with defaults, a dataset's overrides
    sources.py   the sources of the tokens extractor's modalities and the stores they read
"""
