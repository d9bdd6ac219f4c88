"""High-depth images scaled to 8 bits, not clipped; thin images refused before decoding."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile

from mmsets.data.manifest import Manifest
from mmsets.extract import image as image_mod
from mmsets.extract import make_params
from mmsets.extract.backbones import embed_images, load_image_backbone
from mmsets.extract.image import extract_image
from mmsets.extract.image_depth import to_eight_bit
from mmsets.extract.item_loop import ImageSkip
from mmsets.extract.per_image import MAX_ASPECT, ImageFiles, open_image
from mmsets.runtime import Runtime

skimage_data = pytest.importorskip("skimage.data", reason="real test photos come from scikit-image")


@pytest.fixture(scope="module")
def sixteen_bit(tmp_path_factory):
    """A 16-bit grey photo (I;16 PNG) and its 8-bit rendering (each value times 255/65535) as an L PNG."""
    d = tmp_path_factory.mktemp("depth")
    rng = np.random.default_rng(0)
    camera = skimage_data.camera().astype(np.uint32)
    values = (camera * 257 + rng.integers(-128, 129, camera.shape)).clip(0, 65535).astype(np.uint16)
    Image.fromarray(values).save(d / "deep.png")
    Image.fromarray(np.rint(values / 257).astype(np.uint8)).save(d / "flat.png")
    return d / "deep.png", d / "flat.png"


def test_a_16_bit_png_is_scaled_like_its_8_bit_rendering(sixteen_bit):
    deep, flat = sixteen_bit
    assert Image.open(deep).mode == "I;16"
    got, want = (np.asarray(open_image(p), dtype=np.int16) for p in (deep, flat))
    assert np.abs(got - want).max() <= 1
    assert (got == 255).mean() < 0.05  # Pillow's own convert made 99.6 % of them white


def test_a_16_bit_png_embeds_as_its_8_bit_rendering(sixteen_bit):
    backbone = load_image_backbone("efficientnet_lite0", "cpu", image_size=128)
    deep, flat = (embed_images(backbone, [Image.open(p)])[0] for p in sixteen_bit)
    assert float(deep @ flat / np.linalg.norm(deep) / np.linalg.norm(flat)) > 0.99


@pytest.mark.parametrize("values, mode, want", [
    (np.array([[0, 32768, 65535]], np.int32), "I", [0, 128, 255]),  # a 16-bit PNG as Pillow may give it
    (np.array([[-1000, 0, 1000]], np.int32), "I", [0, 128, 255]),  # beyond 16 bits: stretched
    (np.array([[0.0, 0.5, 1.0]], np.float32), "F", [0, 128, 255]),
    (np.array([[np.nan, 2.0, 3.0, 4.0]], np.float32), "F", [0, 0, 128, 255]),  # NaN as the lowest
])
def test_32_bit_modes_are_scaled(values, mode, want):
    image = Image.fromarray(values)
    assert image.mode == mode
    assert np.asarray(to_eight_bit(image)).ravel().tolist() == want


def test_an_8_bit_image_is_left_as_it_is():
    image = Image.new("RGB", (4, 4), (10, 20, 30))
    assert to_eight_bit(image) is image


@pytest.fixture()
def thin_png(tmp_path):
    """The reporter's 65535x1 PNG: a few hundred bytes, 65,535 pixels."""
    path = tmp_path / "thin.png"
    Image.new("L", (65535, 1)).save(path, optimize=True)
    assert path.stat().st_size < 1000
    return path


@pytest.mark.parametrize("size", [(65535, 1), (1, 65535), (MAX_ASPECT * 3 + 1, 3)])
def test_a_thin_image_is_too_large_before_decoding(tmp_path, monkeypatch, size):
    path = tmp_path / "thin.png"
    Image.new("L", size).save(path)

    def no_decoding(self):
        raise AssertionError("decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageSkip) as skip:
        open_image(path, max_pixels=65535)
    assert skip.value.reason == "too_large"
    assert f"{size[0]}x{size[1]} pixels: its long side is over {MAX_ASPECT} times its short side" in str(skip.value)


def test_sides_up_to_the_bound_decode(tmp_path):
    path = tmp_path / "banner.png"
    Image.new("L", (MAX_ASPECT * 3, 3)).save(path)
    assert open_image(path).size == (MAX_ASPECT * 3, 3)


def test_a_thin_image_is_a_counted_skip(thin_png, tmp_path, monkeypatch):
    backbone = load_image_backbone("efficientnet_lite0", "cpu", image_size=64)
    monkeypatch.setattr(image_mod, "load_image_backbone", lambda *a, **k: backbone)
    frame = pd.DataFrame({"id": ["thin"], "split": "train", "image": [str(thin_png)], "labels": [["a"]]})
    runtime = Runtime(num_workers=0, progress=False, device="cpu", max_pixels=65535)
    summary = extract_image(Manifest(frame, ["a"]), tmp_path / "i.h5", make_params("image", {}), runtime)
    assert summary["skipped"] == {"too_large": 1} and "65535x1 pixels" in summary["errors"][0]["detail"]


def test_running_out_of_memory_is_named(tmp_path):
    path = tmp_path / "ok.png"
    Image.new("RGB", (8, 8)).save(path)

    def exhausting(image):
        raise MemoryError()
    with pytest.raises(ImageSkip) as skip:
        ImageFiles([str(path)], exhausting)[0]
    assert str(skip.value) == f"{path}: MemoryError: out of memory"
