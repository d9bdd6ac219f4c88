"""Work folders for Snakemake runs in the tests."""


def workdir_config(work):
    """Where Snakemake reads a work folder's config (config.yaml, beside the top-level Snakefile)."""
    path = work / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
