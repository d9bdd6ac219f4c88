"""Google Cloud Vision: TEXT_DETECTION (the DM2S2 paper's OCR) and LABEL_DETECTION, batched and retried.

Credentials come only from Google's standard environment (GOOGLE_APPLICATION_CREDENTIALS or
application-default credentials); nothing here reads, stores or logs them.
"""

from __future__ import annotations

import io
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PIL import Image

from mmsets.extract.ocr_backends import OCRError, OCRResult

log = logging.getLogger(__name__)

MAX_IMAGES_PER_REQUEST = 16  # the service's limit for batch_annotate_images
MAX_SIDE = 2048  # longer sides are scaled down before upload (the request size limit); boxes are scaled back
INSTALL = "pip install google-cloud-vision==3.16.0"
NO_CREDENTIALS = ("Cloud Vision needs Google credentials from the environment: set GOOGLE_APPLICATION_CREDENTIALS "
                  "to a service-account key file or run `gcloud auth application-default login`")
# google.rpc.Code of a per-image error -> the summary's reason
ITEM_ERRORS = {3: "invalid_image", 7: "permission_denied", 8: "quota_exceeded", 16: "unauthenticated"}


@dataclass
class Labels:
    """LABEL_DETECTION's answer for one image, best first, or the ``error`` (reason, detail) it failed with."""

    names: list[str] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    error: tuple[str, str] | None = None


def default_client() -> Any:
    try:
        import google.auth.exceptions
        from google.cloud import vision
    except ImportError:
        raise OCRError(f"ocr backend 'cloud_vision' is not installed: {INSTALL}") from None
    try:
        return vision.ImageAnnotatorClient()
    except google.auth.exceptions.DefaultCredentialsError:
        raise OCRError(NO_CREDENTIALS) from None  # its message may name the key file


class CloudVision:
    """Images go up ``MAX_IMAGES_PER_REQUEST`` to a request.

    Transient failures (unavailable, deadline, internal) are retried with exponential backoff, up
    to ``retries`` times, then the run stops (its partial store resumes later). Quota (resource
    exhausted) is retried ``quota_retries`` times, then the request's images are recorded as failed
    and the run goes on. A request refused for credentials stops the run; an image the service
    fails on alone is recorded with its reason, the other images of its request are kept.
    """

    name = "cloud_vision"
    device = "cloud"

    def __init__(self, lang: str | None = None, client: Any = None, retries: int = 6, quota_retries: int = 2,
                 backoff: float = 1.0, max_backoff: float = 32.0, timeout: float = 120.0,
                 sleep: Callable[[float], None] | None = None, **_: object) -> None:
        self.client = client if client is not None else default_client()
        from google.cloud import vision

        self.vision = vision
        self.version = vision.__version__
        self.language_hints = lang.split("+") if lang else []
        self.retries, self.quota_retries = retries, quota_retries
        self.backoff, self.max_backoff, self.timeout, self.sleep = backoff, max_backoff, timeout, sleep or time.sleep

    def read(self, images: list[Image.Image]) -> list[OCRResult]:
        feature = self.vision.Feature(type_=self.vision.Feature.Type.TEXT_DETECTION)
        out = []
        for response, scale in zip(self.annotate(images, feature), map(_scale, images)):
            out.append(OCRResult.failed(*response) if isinstance(response, tuple) else _words(response, scale))
        return out

    def labels(self, images: list[Image.Image], max_results: int) -> list[Labels]:
        feature = self.vision.Feature(type_=self.vision.Feature.Type.LABEL_DETECTION, max_results=max_results)
        return [Labels(error=r) if isinstance(r, tuple) else
                Labels([a.description for a in r.label_annotations],
                       np.array([a.score for a in r.label_annotations], np.float32).reshape(-1))
                for r in self.annotate(images, feature)]

    def annotate(self, images: list[Image.Image], feature: Any) -> list[Any]:
        """One AnnotateImageResponse per image, or (reason, detail) where the service failed on it."""
        context = self.vision.ImageContext(language_hints=self.language_hints)
        out: list[Any] = []
        for start in range(0, len(images), MAX_IMAGES_PER_REQUEST):
            requests = [self.vision.AnnotateImageRequest(image=self.vision.Image(content=_encode(im)),
                                                         features=[feature], image_context=context)
                        for im in images[start:start + MAX_IMAGES_PER_REQUEST]]
            response = self._call(requests)
            if isinstance(response, tuple):
                out += [response] * len(requests)
                continue
            if len(response.responses) != len(requests):
                raise OCRError(f"Cloud Vision answered {len(response.responses)} images for {len(requests)} sent")
            for r in response.responses:
                code = r.error.code if "error" in r else 0
                out.append((ITEM_ERRORS.get(code, "api_error"), f"Cloud Vision error {code}: {r.error.message}")
                           if code else r)
        return out

    def _call(self, requests: list[Any]) -> Any:
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        transient = (gexc.ServiceUnavailable, gexc.GatewayTimeout, gexc.InternalServerError, gexc.BadGateway,
                     auth_exc.TransportError)
        for attempt in range(max(self.retries, self.quota_retries) + 1):
            try:
                # retry=None: this loop is the one retry policy (the client's default would retry under it)
                return self.client.batch_annotate_images(requests=requests, retry=None, timeout=self.timeout)
            except (gexc.Unauthenticated, gexc.PermissionDenied) as err:
                raise OCRError(f"Cloud Vision refused the request ({type(err).__name__}: {err.message}); "
                               f"{NO_CREDENTIALS}, with the Vision API enabled for its project") from None
            except gexc.TooManyRequests as err:  # ResourceExhausted: quota
                if attempt >= self.quota_retries:
                    return "quota_exceeded", f"Cloud Vision {type(err).__name__} ({attempt + 1} tries): {err.message}"
                error = err
            except transient as err:
                if attempt >= self.retries:
                    raise OCRError(f"Cloud Vision unavailable after {attempt + 1} tries ({type(err).__name__}); "
                                   "run again later to resume") from None
                error = err
            except gexc.GoogleAPICallError as err:  # e.g. InvalidArgument: a request these images cannot make
                return "api_error", f"Cloud Vision {type(err).__name__}: {err.message}"
            delay = min(self.max_backoff, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.0)
            log.warning("Cloud Vision %s; retry %d in %.1f s", type(error).__name__, attempt + 1, delay)
            self.sleep(delay)
        raise AssertionError("unreachable")


def _scale(image: Image.Image) -> float:
    return min(1.0, MAX_SIDE / max(image.size))


def _encode(image: Image.Image) -> bytes:
    scale = _scale(image)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _box(vertices: Any, scale: float) -> list[float]:
    xy = np.array([[v.x, v.y] for v in vertices], np.float32).reshape(-1, 2) / scale
    return [*xy.min(0), *xy.max(0)] if len(xy) else [0.0] * 4


def _words(response: Any, scale: float) -> OCRResult:
    """Words of full_text_annotation (they carry a confidence), in the service's reading order."""
    words = [w for page in response.full_text_annotation.pages for block in page.blocks
             for paragraph in block.paragraphs for w in paragraph.words]
    if words:
        return OCRResult(["".join(s.text for s in w.symbols) for w in words],
                         [_box(w.bounding_box.vertices, scale) for w in words], [w.confidence for w in words])
    # text_annotations[0] is the whole text, the rest its words; the service gives them no confidence
    annotations = list(response.text_annotations)[1:]
    return OCRResult([a.description for a in annotations], [_box(a.bounding_poly.vertices, scale) for a in annotations],
                     [1.0] * len(annotations))
