"""mmsets: multimodal items -> ragged feature stores -> set models (DMMS, DM2S2)."""

__version__ = "0.1.0"


def load_run(run_dir, features_dir=None):
    """A trained run ready to score new items: ``load_run(path).predict(items)`` (see :mod:`mmsets.predict`)."""
    from mmsets.predict import load_run as _load_run

    return _load_run(run_dir, features_dir)
