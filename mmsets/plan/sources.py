"""The sources of the tokens extractor's modalities (DM2S2's token sequences): what each reads, from the manifest
or from another extractor's store, and the tokens settings without one of them (modality erasure).
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

from mmsets.plan.errors import ParamsError

FIELD_SOURCES = ("text", "cat")  # "<kind>:<field>" read from the manifest
# store sources -> the per-element string field joined into the span; "faces" only counts elements
STORE_FIELDS = {"ocr": "text", "objects": "label", "labels": "text"}
STORE_SOURCES = (*STORE_FIELDS, "faces")
MANIFEST_KINDS = {"text": "text", "cat": "categorical"}  # a field source's kind -> the kind of manifest field


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


def modalities(settings: Mapping[str, Any]) -> list[str]:
    """The tokens settings' modalities (their sources), in sequence order."""
    return list(settings.get("modalities", []))


def modality_stores(settings: Mapping[str, Any]) -> list[str]:
    """The extractor stores the tokens settings' modalities read."""
    return upstream_stores(modalities(settings))


def modality_fields(settings: Mapping[str, Any]) -> dict[str, list[str]]:
    """The manifest fields the tokens settings' modalities read: ``{"text": [...], "categorical": [...]}``."""
    found: dict[str, list[str]] = {"text": [], "categorical": []}
    for source in modalities(settings):
        kind, name = parse_source(source)
        if name is not None:
            found[MANIFEST_KINDS[kind]].append(name)
    return found


def without_modality(settings: Mapping[str, Any], k: int) -> dict[str, Any]:
    """The tokens settings without their ``k``-th modality (its store and budget dropped too), for the test items
    only: the store of modality erasure."""
    erased = copy.deepcopy(dict(settings))
    del erased["modalities"][k]
    erased["stores"] = {s: p for s, p in erased.get("stores", {}).items() if s in erased["modalities"]}
    budgets = {s: n for s, n in (erased.get("budgets") or {}).items() if s in erased["modalities"]}
    erased["budgets"] = budgets or None
    erased["splits"] = ["test"]
    return erased
