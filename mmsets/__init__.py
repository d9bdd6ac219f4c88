"""mmsets: multimodal items -> ragged feature stores -> set models (DMMS, DM2S2)."""

__version__ = "0.1.0"
