"""Every extractor by name, one entry each: where its code and params dataclass are, and what only it knows: which
stores and manifest fields it reads for given settings, the state it carries to new items, its summary's own
counts, how its settings drop one modality, which environment it runs in and what a job of it needs.

The workflow imports it when it builds the DAG, so it is held to the rule of :mod:`mmsets.plan`: no numpy, no torch.
An entry holds data and small torch-free functions of settings; what needs the extractor's own code is a name in
its ``module``, imported on use.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from mmsets.plan import sources
from mmsets.plan.errors import ParamsError
from mmsets.runtime import Resources

Settings = Mapping[str, Any]  # an extractor's params as plain data (a config section, a store's record)

NETWORK = Resources(threads=2, mem_mb=8000, gpu=True)  # a CNN or transformer on the GPU
MANIFEST_FIELD_KINDS = ("text", "categorical")  # the manifest's text_<field> and cat_<field> columns


def reads_no_fields(settings: Settings) -> dict[str, list[str]]:
    return {}


def reads_no_stores(settings: Settings) -> list[str]:
    return []


def fields_param(kind: str) -> Callable[[Settings], dict[str, list[str]]]:
    """The manifest fields of ``kind`` that the ``fields`` param names (none when it is not set)."""
    def fields(settings: Settings) -> dict[str, list[str]]:
        return {kind: list(settings.get("fields") or [])}
    return fields


@dataclass(frozen=True)
class Extractor:
    """One extractor; ``module`` is imported on use, so naming extractors (the CLI, the DAG) loads no torch."""

    name: str
    module: str
    function: str  # extract(manifest, out_path, params, runtime) -> summary
    params: str  # the params dataclass in ``module``
    # Stores it reads: {param key: upstream extractor}; the workflow fills in the store's path
    upstream: Mapping[str, str] = field(default_factory=dict)
    # A mapping param {upstream extractor: store path} the workflow fills in, for the stores ``mapped_stores``
    # names for the settings
    store_map: str | None = None
    mapped_stores: Callable[[Settings], Sequence[str]] = reads_no_stores
    # The manifest fields it reads with given settings: {"text": [...], "categorical": [...]} (MANIFEST_FIELD_KINDS)
    manifest_fields: Callable[[Settings], Mapping[str, Sequence[str]]] = reads_no_fields
    # A function in ``module``, (store attrs, recorded params) -> params, that gives new items what the store
    # fitted on its own items (the categorical vocabulary)
    carried_state: str | None = None
    count_keys: frozenset[str] = frozenset()  # its own summary keys that count items: shards' are summed
    # settings -> its modalities, in order, and (settings, k) -> the settings without their k-th one (modality
    # erasure); None: it has no modalities
    modality_list: Callable[[Settings], list[str]] | None = None
    erase_modality: Callable[[Settings, int], dict[str, Any]] | None = None
    reads_image: bool = False  # it opens the item's image (a table without an image column cannot make it)
    field_kind: str | None = None  # the kind of manifest field it embeds (a table must declare one of that kind)
    environment: str = "torch"  # envs/<environment>.yaml
    resources: Resources = NETWORK
    unshardable: str | None = None  # why its items cannot be split into shards (mmsets.extract.shards)

    def upstream_of(self, settings: Settings) -> dict[str, str]:
        """``{param key (dotted when nested): upstream extractor}`` of the stores it reads with ``settings``."""
        found = dict(self.upstream)
        if self.store_map is not None:
            found |= {f"{self.store_map}.{s}": s for s in self.mapped_stores(settings)}
        return found

    @property
    def store_params(self) -> frozenset[str]:
        """The top-level params the workflow fills in with store paths (they are not user settings)."""
        keys = {key.split(".")[0] for key in self.upstream}
        return frozenset(keys if self.store_map is None else keys | {self.store_map})

    def fields_read(self, settings: Settings) -> dict[str, list[str]]:
        """The manifest fields it reads with ``settings``, by kind: ``{"text": [...], "categorical": [...]}``."""
        found = self.manifest_fields(settings)
        return {kind: list(found.get(kind, [])) for kind in MANIFEST_FIELD_KINDS}

    def carried_params(self, store_attrs: Mapping[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        """The params that extract new items the way a store of it with ``store_attrs`` and recorded ``params``
        extracted its own: with what the store fitted on its items, when it fits anything."""
        if self.carried_state is None:
            return params
        return getattr(importlib.import_module(self.module), self.carried_state)(store_attrs, params)

    def modalities(self, settings: Settings) -> list[str]:
        """The modalities of its store with ``settings``, in order (the k of ``erased``); a ParamsError for an
        extractor without modalities."""
        if self.modality_list is None:
            raise ParamsError(f"extractor {self.name!r} has no modalities")
        return self.modality_list(settings)

    def check_shardable(self) -> None:
        """A ParamsError saying why, when its items cannot be split into shards (mmsets.extract.shards)."""
        if self.unshardable is not None:
            raise ParamsError(f"extractor {self.name!r} cannot be sharded: {self.unshardable}")

    def erased(self, settings: Settings, k: int) -> dict[str, Any]:
        """``settings`` without their ``k``-th modality, extracting the test items only (modality erasure); a
        ParamsError for an extractor without modalities."""
        if self.erase_modality is None:
            raise ParamsError(f"extractor {self.name!r} has no modalities to erase")
        return self.erase_modality(settings, k)


def _table(*extractors: Extractor) -> dict[str, Extractor]:
    return {e.name: e for e in extractors}


# The OCR engines and the Cloud Vision client (which the labels extractor also asks) live in the "ocr" environment.
EXTRACTORS: dict[str, Extractor] = _table(
    Extractor("image", "mmsets.extract.image", "extract_image", "ImageParams", reads_image=True),
    Extractor("text", "mmsets.extract.text", "extract_text", "TextParams", manifest_fields=fields_param("text"),
              field_kind="text", count_keys=frozenset({"truncated", "cut_to_max_elements"})),
    # tesseract, the default backend, runs on CPUs: one process per thread
    Extractor("ocr", "mmsets.extract.ocr", "extract_ocr", "OCRParams", environment="ocr", reads_image=True,
              count_keys=frozenset({"cut_to_max_elements"}), resources=Resources(threads=4, mem_mb=4000, gpu=False)),
    Extractor("ocr_text", "mmsets.extract.text", "extract_ocr_text", "OCRTextParams", upstream={"ocr_store": "ocr"},
              count_keys=frozenset({"truncated"})),
    Extractor("labels", "mmsets.extract.labels", "extract_labels", "LabelsParams", environment="ocr",
              reads_image=True),
    Extractor("tokens", "mmsets.extract.tokens", "extract_tokens", "TokensParams", store_map="stores",
              mapped_stores=sources.modality_stores, manifest_fields=sources.modality_fields,
              count_keys=frozenset({"truncated", "empty", "not_in_store"}),
              modality_list=sources.modalities, erase_modality=sources.without_modality),
    Extractor("objects", "mmsets.extract.objects", "extract_objects", "ObjectsParams", reads_image=True),
    Extractor("bbox", "mmsets.extract.bbox", "extract_bbox", "BBoxParams", upstream={"objects_store": "objects"},
              reads_image=True,
              count_keys=frozenset({"degenerate_boxes"})),
    Extractor("categorical", "mmsets.extract.categorical", "extract_categorical", "CategoricalParams",
              manifest_fields=fields_param("categorical"), field_kind="categorical",
              carried_state="training_vocabulary",
              resources=Resources(threads=1, mem_mb=4000, gpu=False),
              unshardable="its vocabulary is fitted on all training items (and it is fast)"),
    Extractor("faces", "mmsets.extract.faces", "extract_faces", "FacesParams", count_keys=frozenset({"no_face"}),
              reads_image=True),
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
