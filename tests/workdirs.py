"""Work folders for Snakemake runs in the tests."""


def workdir_config(work):
    """Where Snakemake reads a work folder's config (config/config.yaml, the catalog's layout)."""
    path = work / "config" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
