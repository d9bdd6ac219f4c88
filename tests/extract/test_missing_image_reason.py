"""An image path that is no file says what it is instead: a symlink loop, a broken link."""

import pytest

from mmsets.extract.item_loop import ImageSkip
from mmsets.extract.per_image import open_image


def skip_of(path) -> ImageSkip:
    with pytest.raises(ImageSkip) as err:
        open_image(str(path))
    return err.value


def detail(skip: ImageSkip) -> str:
    return f"{skip.reason}: {skip.detail}"


def test_a_symlink_loop_is_named_so_not_no_such_file(tmp_path):
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    assert "symlink loop" in detail(skip_of(tmp_path / "a.jpg"))


def test_a_broken_link_names_its_target_and_an_absent_file_stays_no_such_file(tmp_path):
    (tmp_path / "poster.jpg").symlink_to(tmp_path / "gone.jpg")
    assert "broken symlink (to " in detail(skip_of(tmp_path / "poster.jpg"))
    assert "no such file" in detail(skip_of(tmp_path / "absent.jpg"))
