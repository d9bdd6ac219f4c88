"""The error of an extraction that cannot give a meaningful store."""


class ExtractError(RuntimeError):
    """An extraction that cannot give a meaningful store (every image path wrong, say); the message says why."""
