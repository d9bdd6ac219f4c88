"""The errors of a wrong setting, each naming the key: the workflow's config, an extractor's params, a run spec."""


class ConfigError(ValueError):
    """A wrong config.yaml (or --config) value."""


class ParamsError(ValueError):
    """A wrong extractor setting; the message names the key."""


class SpecError(ValueError):
    """A wrong run spec; the message names the key."""


# What to install for an optional part, where a missing package is reported (the workflow's check and the job).
MLFLOW_INSTALL_HINT = 'pip install "mmsets[mlflow]" (mlflow-skinny)'
