"""What a table dataset's declared fields (its image, text and categorical columns) let it run: the extractor
settings that follow them where the dataset sets none of its own, and what a store needs that the table lacks.

Other kinds of dataset (the demo, MM-IMDb) have every field their extractors read, so both are empty for them.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from mmsets.plan.extractors import extractor, upstream

TABLE = "table"


def field_defaults(dataset: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Extractor settings that follow a table's fields: its text columns are the text extractor's fields, its
    categorical columns the categorical extractor's, and its token sequences are those fields with the
    image's label words when it has images (no OCR and no faces unless the dataset asks for them)."""
    if dataset.get("kind") != TABLE:
        return {}
    text = list(dataset.get("text_columns") or [])
    categorical = list(dataset.get("categorical_columns") or [])
    tokens = [f"text:{c}" for c in text] + [f"cat:{c}" for c in categorical]
    tokens += ["labels"] if dataset.get("image_column") else []
    defaults: dict[str, dict[str, Any]] = {}
    if text:
        defaults["text"] = {"fields": text}
    if categorical:
        defaults["categorical"] = {"fields": categorical}
    if tokens:
        defaults["tokens"] = {"modalities": tokens}
    return defaults


def lacking(dataset: Mapping[str, Any], store: str, settings_of: Callable[[str], Mapping[str, Any]],
            configured: list[str]) -> list[str]:
    """What a table lacks to make ``store`` (with its upstream stores), e.g. ``["an image_column", "text column
    'title'"]``; empty when it can, and always for other kinds. ``settings_of(name)``: an extractor's settings."""
    if dataset.get("kind") != TABLE:
        return []
    settings = settings_of(store)
    found = ["an image_column"] if extractor(store).reads_image and not dataset.get("image_column") else []
    declared = {"text": dataset.get("text_columns") or [], "categorical": dataset.get("categorical_columns") or []}
    kind = extractor(store).field_kind
    if kind and not declared[kind]:
        found.append(f"{kind}_columns")
    for kind, fields in extractor(store).fields_read(settings).items():
        found += [f"{kind} column {name!r}" for name in fields if name not in declared[kind]]
    for name in upstream(store, settings, configured).values():
        found += [need for need in lacking(dataset, name, settings_of, configured) if need not in found]
    return found
