"""Every extractor by name, one entry each: where its code and params dataclass are, which stores it reads,
which environment it runs in and what a job of it needs.

Free of numpy and torch on purpose: the workflow imports it when it builds the DAG, in the plain Python that
runs Snakemake (under ``--use-conda`` the extractors' own packages live only in the rules' environments).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from mmsets.runtime import Resources


class ParamsError(ValueError):
    """A wrong extractor setting; the message names the key."""


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

    def upstream_of(self, settings: Mapping[str, Any]) -> dict[str, str]:
        """``{param key (dotted when nested): upstream extractor}`` of the stores it reads with ``settings``."""
        found = dict(self.upstream)
        if self.modality_stores is not None:
            from mmsets.extract.sources import upstream_stores

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
              resources=Resources(threads=1, mem_mb=4000, gpu=False)),
    Extractor("faces", "mmsets.extract.faces", "extract_faces", "FacesParams"),
)


def extractor(name: str) -> Extractor:
    """The entry of extractor ``name``, or a ParamsError listing the known ones."""
    if name not in EXTRACTORS:
        raise ParamsError(f"extractor {name!r} is unknown; known: {sorted(EXTRACTORS)}")
    return EXTRACTORS[name]


def check_extractor(name: str) -> None:
    extractor(name)


def upstream(name: str, settings: Mapping[str, Any]) -> dict[str, str]:
    """The stores extractor ``name`` reads with ``settings``: ``{its param key (dotted when nested): extractor}``."""
    return extractor(name).upstream_of(settings)


def environment(name: str) -> str:
    """The name of the conda environment file (``envs/<name>.yaml``) extractor ``name`` runs in."""
    return extractor(name).environment


def resources(name: str) -> Resources:
    """What a job of extractor ``name`` asks for: threads, memory, whether it uses a GPU."""
    return extractor(name).resources
