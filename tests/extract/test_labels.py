import dataclasses
from unittest import mock

import numpy as np
import pandas as pd
import pytest

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.extract import ParamsError, make_params, run_extractor
from mmsets.extract import labels as labels_mod
from mmsets.extract.errors import ExtractError
from mmsets.extract.labels import LabelsParams, extract_labels, imagenet_class_names
from mmsets.runtime import Runtime
from mmsets.store import RaggedStore, partial_path

CATS = {"tabby, tabby cat", "tiger cat", "Persian cat", "Siamese cat, Siamese", "Egyptian cat"}
QUIET = Runtime(num_workers=0, progress=False)


def manifest_of(photos, names) -> Manifest:
    images = [None if n is None else str(photos[n]) for n in names]
    frame = pd.DataFrame({"id": [f"img{i}" for i in range(len(names))], "split": "train", "image": images,
                          "labels": [["drama"]] * len(names)})
    return Manifest(frame, ["drama"], dataset="photos")


def test_the_cat_photo_gets_a_cat_label(photos, lite0, tmp_path, monkeypatch):
    names = ["cat.jpg", "coffee.png", "corrupt.jpg", None]
    write_manifest(manifest_of(photos, names), tmp_path / "manifest.parquet")
    monkeypatch.setattr(labels_mod, "load_classifier", lambda model, device, **k: lite0)  # the session's loaded copy
    summary = run_extractor("labels", tmp_path / "manifest.parquet", tmp_path / "labels.h5", {"top_k": 5},
                            {"device": "cpu", "num_workers": 0, "progress": False})
    assert summary["items"] == 4 and summary["elements"] == 10
    assert summary["skipped"] == {"corrupt": 1, "no_image": 1}
    with RaggedStore(tmp_path / "labels.h5") as store:
        assert store.dim == 1 and store.attrs["extractor"] == "labels" and store.params["top_k"] == 5
        cat_names, coffee_names = store.get(["img0", "img1"], "text")
        cat_probs, _ = store.get(["img0", "img1"])
    assert cat_names[0] in CATS and set(cat_names) & CATS
    assert "espresso" in coffee_names or "cup" in coffee_names
    p = cat_probs[:, 0]
    assert p.dtype == np.float32 and (np.diff(p) <= 0).all() and 0 < p.sum() <= 1 + 1e-5 and p[0] > 0.3


def test_min_prob_drops_unlikely_labels(photos, lite0, tmp_path):
    params = LabelsParams(top_k=10, min_prob=0.2)
    summary = extract_labels(manifest_of(photos, ["cat.jpg", "gray.png"]), tmp_path / "labels.h5", params, QUIET,
                             engine=lite0)
    with RaggedStore(tmp_path / "labels.h5") as store:
        probs = store.get(store.ids)
    assert all((p[:, 0] >= 0.2).all() for p in probs) and 1 <= len(probs[0]) < 10
    assert summary["elements"] == sum(map(len, probs))


def test_class_names_and_params():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[285] == "Egyptian cat"
    assert make_params("labels", {}) == LabelsParams(backend="imagenet", model="efficientnet_lite0", top_k=5)
    with pytest.raises(ParamsError, match="top_k: 0 is below 1"):
        make_params("labels", {"top_k": 0})
    with pytest.raises(ParamsError, match="backend: 'clarifai' is not one of"):
        make_params("labels", {"backend": "clarifai"})
    with pytest.raises(ParamsError, match=r"min_prob: 1.5 is not in \[0, 1\]"):
        make_params("labels", {"min_prob": 1.5})


def test_cloud_vision_label_detection(photos, tmp_path):
    vision = pytest.importorskip("google.cloud.vision", reason="pip install google-cloud-vision==3.16.0")
    from google.auth.credentials import AnonymousCredentials
    from google.rpc import status_pb2

    from mmsets.extract.ocr_backends.cloud_vision import CloudVision

    client = vision.ImageAnnotatorClient(credentials=AnonymousCredentials())
    labels = [vision.EntityAnnotation(description=d, score=s) for d, s in [("Cat", 0.97), ("Whiskers", 0.9),
                                                                          ("Carnivore", 0.4)]]

    def answer(code, message):
        return vision.BatchAnnotateImagesResponse(responses=[
            vision.AnnotateImageResponse(label_annotations=labels),
            vision.AnnotateImageResponse(error=status_pb2.Status(code=code, message=message))])

    def extract(out):
        return extract_labels(manifest_of(photos, ["cat.jpg", "coffee.png"]), out,
                              LabelsParams(backend="cloud_vision", top_k=3, min_prob=0.5), QUIET,
                              engine=CloudVision(client=client))

    with mock.patch.object(type(client.transport.batch_annotate_images), "__call__") as call:
        call.return_value = answer(7, "Permission denied on billing")  # a refusal: asked again on the next run
        with pytest.raises(ExtractError, match=r"permission_denied: 1; first 'img1'.*keeps the other 1: run again"):
            extract(tmp_path / "refused.h5")
        assert not (tmp_path / "refused.h5").exists() and partial_path(tmp_path / "refused.h5").exists()
        call.return_value = answer(3, "Bad image data")  # the image itself: skipped and counted
        summary = extract(tmp_path / "labels.h5")
    (feature,) = call.call_args.args[0].requests[0].features
    assert feature.type_ == vision.Feature.Type.LABEL_DETECTION and feature.max_results == 3
    assert summary["skipped"] == {"invalid_image": 1} and summary["errors"][0]["id"] == "img1"
    with RaggedStore(tmp_path / "labels.h5") as store:
        assert list(store.get(["img0"], "text")[0]) == ["Cat", "Whiskers"]
        np.testing.assert_allclose(store.get(["img0"])[0][:, 0], [0.97, 0.9])
        assert store.attrs["backend"] == "cloud_vision"


@pytest.fixture(scope="module")
def random_wsl_classifier():
    """ResNeXt-101 32x16d WSL with its ImageNet head at random weights, as weights: random builds it; 64 pixels."""
    from mmsets.extract.backbones import timm_transform

    backbone = labels_mod.load_classifier("resnext101_32x16d_wsl", "cpu", pretrained=False)
    return dataclasses.replace(backbone, transform=timm_transform(backbone.model, 64))


def test_random_weights_rehearse_the_paper_cnn_labels(photos, random_wsl_classifier, loader, twice, tmp_path,
                                                      monkeypatch):
    load = loader(random_wsl_classifier)
    monkeypatch.setattr(labels_mod, "load_classifier", load)
    write_manifest(manifest_of(photos, ["cat.jpg", "coffee.png", None]), tmp_path / "manifest.parquet")
    params = {"model": "resnext101_32x16d_wsl", "weights": "random", "top_k": 3}
    summary, path = twice("labels", tmp_path / "manifest.parquet", tmp_path, params)
    assert load.calls == [("resnext101_32x16d_wsl", {"pretrained": False})] * 2
    assert summary["elements"] == 6 and summary["skipped"] == {"no_image": 1}
    with RaggedStore(path) as store:
        assert store.attrs["model"] == "resnext101_32x16d_wsl" and store.params["weights"] == "random"
        names = store.get(store.ids[:2], "text")
    assert all(set(n) <= set(imagenet_class_names()) and len(n) == 3 for n in names)
    with pytest.raises(ParamsError, match="weights: 'random' is for the imagenet backend"):
        make_params("labels", {"backend": "cloud_vision", "weights": "random"})
