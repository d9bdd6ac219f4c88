"""The report: thumbnails as the model sees the image, no control or bidi character reaching
the page raw, no absolute path in the error tables."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from mmsets.report import build_report
from mmsets.report.examples import thumbnail
from mmsets.store import RaggedWriter

EXIF_ORIENTATION = 0x0112
ROTATED_90 = 6  # the viewer turns the stored image 90 degrees clockwise


def decoded(uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_a_thumbnail_is_upright_as_its_exif_orientation_says(tmp_path):
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATED_90
    Image.new("RGB", (120, 40), (200, 40, 40)).save(tmp_path / "wide.jpg", exif=exif.tobytes())
    small = decoded(thumbnail(str(tmp_path / "wide.jpg"), size=60))
    assert small.size == (20, 60)  # stored wide, shown tall


def test_a_16_bit_thumbnail_is_scaled_not_clipped_to_white(tmp_path):
    mid_grey = np.full((32, 32), 128 * 257, np.uint16)
    Image.fromarray(mid_grey).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")
    pixels = np.asarray(decoded(thumbnail(str(tmp_path / "grey16.png"), size=16)).convert("L"))
    assert abs(int(pixels.mean()) - 128) <= 3


@pytest.fixture
def spoofing_store(tmp_path):
    path = tmp_path / "features" / "image.h5"
    writer = RaggedWriter(path, extractor="image", dim=2, model="efficientnet_lite0", params={})
    writer.add("tt\u202egpj.exe", np.zeros((0, 2)))
    writer.close(items=1, with_elements=0, elements=0, skipped={"missing_file": 1},
                 errors=[{"id": "tt\u202egpj.exe", "reason": "missing\x00_file",
                          "detail": "/home/ana/private/posters/tt1.jpg: no such file"}])
    return path


def test_bidi_and_control_characters_are_shown_as_escapes(spoofing_store, tmp_path):
    html = build_report(tmp_path / "no_manifest.parquet", [], {"ima\u2066ge": spoofing_store},
                        tmp_path / "report.html").read_text()
    for raw in ("\u202e", "\u2066", "\x00"):
        assert raw not in html
    assert "tt\\u202egpj.exe" in html and "missing\\u0000_file" in html and "ima\\u2066ge" in html


def test_error_tables_show_an_image_by_its_file_name_not_where_it_lies(spoofing_store, tmp_path):
    html = build_report(tmp_path / "no_manifest.parquet", [], {"image": spoofing_store},
                        tmp_path / "report.html").read_text()
    assert "tt1.jpg: no such file" in html and "/home/ana" not in html
