"""Every extractor by name: where its code is, which stores it reads and which environment it runs in.

Free of numpy and torch on purpose: the workflow imports it when it builds the DAG, in the plain Python that
runs Snakemake (under ``--use-conda`` the extractors' own packages live only in the rules' environments).
"""

from __future__ import annotations

from typing import Any, Mapping


class ParamsError(ValueError):
    """A wrong extractor setting; the message names the key."""


# name -> (module, extract function, params dataclass); imported on use, so the CLI starts without torch
EXTRACTORS: dict[str, tuple[str, str, str]] = {
    "image": ("mmsets.extract.image", "extract_image", "ImageParams"),
    "text": ("mmsets.extract.text", "extract_text", "TextParams"),
    "ocr": ("mmsets.extract.ocr", "extract_ocr", "OCRParams"),
    "ocr_text": ("mmsets.extract.text", "extract_ocr_text", "OCRTextParams"),
    "labels": ("mmsets.extract.labels", "extract_labels", "LabelsParams"),
    "tokens": ("mmsets.extract.tokens", "extract_tokens", "TokensParams"),
    "objects": ("mmsets.extract.objects", "extract_objects", "ObjectsParams"),
    "bbox": ("mmsets.extract.bbox", "extract_bbox", "BBoxParams"),
    "categorical": ("mmsets.extract.categorical", "extract_categorical", "CategoricalParams"),
    "faces": ("mmsets.extract.faces", "extract_faces", "FacesParams"),
}

# The conda environment (envs/<name>.yaml) of each extractor: the OCR engines and the Cloud Vision client
# (which the labels extractor also asks) live in "ocr"; every other extractor needs "torch".
ENVIRONMENTS: dict[str, str] = {name: "torch" for name in EXTRACTORS} | {"ocr": "ocr", "labels": "ocr"}

# Extractors that read another extractor's store: {param key: upstream extractor}
_FIXED_UPSTREAM: dict[str, dict[str, str]] = {"bbox": {"objects_store": "objects"}, "ocr_text": {"ocr_store": "ocr"}}


def check_extractor(name: str) -> None:
    if name not in EXTRACTORS:
        raise ParamsError(f"extractor {name!r} is unknown; known: {sorted(EXTRACTORS)}")


def upstream(name: str, settings: Mapping[str, Any]) -> dict[str, str]:
    """The stores extractor ``name`` reads with ``settings``: ``{its param key (dotted when nested): extractor}``."""
    check_extractor(name)
    if name == "tokens":
        from mmsets.extract.sources import upstream_stores

        return {f"stores.{source}": source for source in upstream_stores(settings.get("modalities", []))}
    return dict(_FIXED_UPSTREAM.get(name, {}))


def environment(name: str) -> str:
    """The name of the conda environment file (``envs/<name>.yaml``) extractor ``name`` runs in."""
    check_extractor(name)
    return ENVIRONMENTS[name]
