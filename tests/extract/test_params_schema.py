"""The workflow schema and the params dataclasses describe the same settings with the same defaults."""

import dataclasses
import importlib
from pathlib import Path

import pytest
import yaml

from mmsets.plan.errors import ParamsError

from mmsets.plan.extractors import EXTRACTORS

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture(scope="module")
def schema_extractors() -> dict:
    return yaml.safe_load(SCHEMA.read_text())["properties"]["extractors"]["properties"]


def params_class(name: str) -> type:
    entry = EXTRACTORS[name]
    return getattr(importlib.import_module(entry.module), entry.params)


def default_of(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def as_json(value):
    """Tuples and lists alike, as YAML has only lists."""
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


def test_every_extractor_has_a_schema_section(schema_extractors):
    assert set(schema_extractors) == set(EXTRACTORS)


@pytest.mark.parametrize("name", sorted(EXTRACTORS))
def test_schema_settings_are_the_params_fields(name, schema_extractors):
    """Every field but the store paths the workflow fills in itself (the registry's upstream declaration)."""
    fields = {f.name for f in dataclasses.fields(params_class(name))}
    filled = EXTRACTORS[name].store_params
    assert filled <= fields, f"{name}: the registry fills in {sorted(filled - fields)}, which are not params"
    assert set(schema_extractors[name]["properties"]) == fields - filled


# Settings added later whose default (None) stays out of the rule params, so stores written before them
# are not re-extracted: the dataclass default applies.
ABSENT_UNLESS_SET = {("tokens", "splits"), ("categorical", "vocab"), ("text", "max_elements"), ("ocr", "max_elements")}


@pytest.mark.parametrize("name", sorted(EXTRACTORS))
def test_schema_defaults_are_the_params_defaults(name, schema_extractors):
    section = schema_extractors[name]
    assert section["default"] == {}, f"{name}: a missing section takes every default below"
    filled = EXTRACTORS[name].store_params
    for f in dataclasses.fields(params_class(name)):
        if f.name in filled:
            continue
        prop = section["properties"][f.name]
        if (name, f.name) in ABSENT_UNLESS_SET:
            assert "default" not in prop and default_of(f) is None, f"extractors.{name}.{f.name}"
            continue
        assert "default" in prop, f"extractors.{name}.{f.name}: the schema gives no default"
        assert as_json(prop["default"]) == as_json(default_of(f)), f"extractors.{name}.{f.name}"



def test_a_variant_is_its_extractor_and_reads_its_upstream_variant_when_configured():
    from mmsets.plan.extractors import extractor, split_variant, upstream

    assert split_variant("ocr@easyocr") == ("ocr", "easyocr") and split_variant("ocr") == ("ocr", None)
    assert extractor("ocr_text@easyocr") is extractor("ocr_text")
    assert upstream("ocr_text@easyocr", {}, ["ocr", "ocr@easyocr"]) == {"ocr_store": "ocr@easyocr"}
    assert upstream("ocr_text@other", {}, ["ocr", "ocr@easyocr"]) == {"ocr_store": "ocr"}
    assert upstream("tokens@easyocr", {"modalities": ["text:plot", "ocr", "faces"]}, ["ocr@easyocr"]) == {
        "stores.ocr": "ocr@easyocr", "stores.faces": "faces"}
    with pytest.raises(ParamsError, match="variant name"):
        split_variant("ocr@")
