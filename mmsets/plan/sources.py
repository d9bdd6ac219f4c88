"""The sources of the tokens extractor's modalities (DM2S2's token sequences), and the stores they read.
"""

from __future__ import annotations

from typing import Sequence

from mmsets.plan.errors import ParamsError

FIELD_SOURCES = ("text", "cat")  # "<kind>:<field>" read from the manifest
# store sources -> the per-element string field joined into the span; "faces" only counts elements
STORE_FIELDS = {"ocr": "text", "objects": "label", "labels": "text"}
STORE_SOURCES = (*STORE_FIELDS, "faces")


def parse_source(source: str) -> tuple[str, str | None]:
    """``"text:plot"`` -> ("text", "plot"); ``"ocr"`` -> ("ocr", None)."""
    kind, sep, name = str(source).partition(":")
    if kind in FIELD_SOURCES and sep and name:
        return kind, name
    if kind in STORE_SOURCES and not sep:
        return kind, None
    raise ParamsError(f"tokens params.modalities: {source!r} is not one of text:<field>, cat:<field>, "
                      + ", ".join(STORE_SOURCES))


def upstream_stores(modalities: Sequence[str]) -> list[str]:
    """The extractor stores the sources need, in order: ``["text:title", "ocr", "faces"]`` -> ``["ocr", "faces"]``.

    Each store source is read from the store of the extractor of the same name.
    """
    return [s for s in modalities if parse_source(s)[0] in STORE_SOURCES]
