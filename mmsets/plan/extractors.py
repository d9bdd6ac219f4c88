"""Every extractor by name, one entry each: where its code and params dataclass are, which stores it reads,
which environment it runs in and what a job of it needs.

The workflow imports it when it builds the DAG, so it is held to the rule of :mod:`mmsets.plan`: no numpy, no torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from mmsets.plan.errors import ParamsError
from mmsets.plan.sources import upstream_stores
from mmsets.runtime import Resources


NETWORK = Resources(threads=2, mem_mb=8000, gpu=True)  # a CNN or transformer on the GPU


@dataclass(frozen=True)
class Extractor:
    """One extractor; ``module`` is imported on use, so naming extractors (the CLI, the DAG) loads no torch."""

    name: str
    module: str
    function: str  # extract(manifest, out_path, params, runtime) -> summary
    params: str  # the params dataclass in ``module``
    # Stores it reads: {param key: upstream extractor}; the workflow fills in the store's path
    upstream: Mapping[str, str] = field(default_factory=dict)
    # A mapping param under which the workflow fills in the store of each store source in ``modalities``
    modality_stores: str | None = None
    environment: str = "torch"  # envs/<environment>.yaml
    resources: Resources = NETWORK
    unshardable: str | None = None  # why its items cannot be split into shards (mmsets.extract.shards)

    def upstream_of(self, settings: Mapping[str, Any]) -> dict[str, str]:
        """``{param key (dotted when nested): upstream extractor}`` of the stores it reads with ``settings``."""
        found = dict(self.upstream)
        if self.modality_stores is not None:
            found |= {f"{self.modality_stores}.{s}": s for s in upstream_stores(settings.get("modalities", []))}
        return found

    @property
    def store_params(self) -> frozenset[str]:
        """The top-level params the workflow fills in with store paths (they are not user settings)."""
        keys = {key.split(".")[0] for key in self.upstream}
        return frozenset(keys if self.modality_stores is None else keys | {self.modality_stores})


def _table(*extractors: Extractor) -> dict[str, Extractor]:
    return {e.name: e for e in extractors}


# The OCR engines and the Cloud Vision client (which the labels extractor also asks) live in the "ocr" environment.
EXTRACTORS: dict[str, Extractor] = _table(
    Extractor("image", "mmsets.extract.image", "extract_image", "ImageParams"),
    Extractor("text", "mmsets.extract.text", "extract_text", "TextParams"),
    # tesseract, the default backend, runs on CPUs: one process per thread
    Extractor("ocr", "mmsets.extract.ocr", "extract_ocr", "OCRParams", environment="ocr",
              resources=Resources(threads=4, mem_mb=4000, gpu=False)),
    Extractor("ocr_text", "mmsets.extract.text", "extract_ocr_text", "OCRTextParams", upstream={"ocr_store": "ocr"}),
    Extractor("labels", "mmsets.extract.labels", "extract_labels", "LabelsParams", environment="ocr"),
    Extractor("tokens", "mmsets.extract.tokens", "extract_tokens", "TokensParams", modality_stores="stores"),
    Extractor("objects", "mmsets.extract.objects", "extract_objects", "ObjectsParams"),
    Extractor("bbox", "mmsets.extract.bbox", "extract_bbox", "BBoxParams", upstream={"objects_store": "objects"}),
    Extractor("categorical", "mmsets.extract.categorical", "extract_categorical", "CategoricalParams",
              resources=Resources(threads=1, mem_mb=4000, gpu=False),
              unshardable="its vocabulary is fitted on all training items (and it is fast)"),
    Extractor("faces", "mmsets.extract.faces", "extract_faces", "FacesParams"),
)


VARIANT = "@"  # a named variant of an extractor: "ocr@easyocr" is the ocr extractor with its own settings
VARIANT_NAME = re.compile(r"[A-Za-z0-9_]+")


def split_variant(name: str) -> tuple[str, str | None]:
    """``"ocr@easyocr"`` -> ("ocr", "easyocr"); ``"ocr"`` -> ("ocr", None)."""
    base, sep, variant = name.partition(VARIANT)
    if sep and not VARIANT_NAME.fullmatch(variant):
        raise ParamsError(f"extractor {name!r}: a variant name is letters, digits and _ after {VARIANT!r}")
    return base, (variant if sep else None)


def extractor(name: str) -> Extractor:
    """The entry of extractor ``name`` (a variant's is its extractor's), or a ParamsError listing the known ones."""
    base, _ = split_variant(name)
    if base not in EXTRACTORS:
        raise ParamsError(f"extractor {name!r} is unknown; known: {sorted(EXTRACTORS)}")
    return EXTRACTORS[base]


def check_extractor(name: str) -> None:
    extractor(name)


def upstream(name: str, settings: Mapping[str, Any], configured: Iterable[str] = ()) -> dict[str, str]:
    """The stores extractor ``name`` reads with ``settings``: ``{its param key (dotted when nested): extractor}``.

    A variant reads the same variant of an upstream extractor when one is ``configured`` ("tokens@easyocr"
    reads "ocr@easyocr"), else the upstream extractor itself.
    """
    _, variant = split_variant(name)
    found = extractor(name).upstream_of(settings)
    if variant is None:
        return found
    configured = set(configured)
    return {key: f"{up}{VARIANT}{variant}" if f"{up}{VARIANT}{variant}" in configured else up
            for key, up in found.items()}


def environment(name: str) -> str:
    """The name of the conda environment file (``envs/<name>.yaml``) extractor ``name`` runs in."""
    return extractor(name).environment


def resources(name: str) -> Resources:
    """What a job of extractor ``name`` asks for: threads, memory, whether it uses a GPU."""
    return extractor(name).resources
