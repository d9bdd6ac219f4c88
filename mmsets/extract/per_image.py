"""What every image-reading extractor shares: decoding an item's image, and ``run_items`` over the manifest's
images (an image that cannot be decoded is an ``ImageSkip``: no image, a missing, broken or too large file, ...).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Callable

from PIL import Image
from torch.utils.data import Dataset

from mmsets.data.manifest import Manifest, is_missing
from mmsets.extract.backbones import to_rgb
from mmsets.extract.errors import ExtractError
from mmsets.extract.item_loop import Elements, ImageSkip, run_items
from mmsets.extract.tally import RunTally
from mmsets.runtime import Runtime
from mmsets.store import RaggedWriter


# Longer side over shorter side: a thin image resized to a backbone's short side of 224 grows by this factor squared
# (a 65535x1 PNG of 276 bytes would take about 17 GB), whatever the pixel cap lets through.
MAX_ASPECT = 100


def open_image(path: Any, max_pixels: int | None = None) -> Image.Image:
    """Decode one image file or raise ImageSkip with no_image / not_a_file / missing_file / too_large / corrupt.

    too_large: over ``max_pixels``, over Pillow's own limit, or sides further apart than ``MAX_ASPECT`` to 1;
    all checked from the header, before decoding."""
    if is_missing(path):
        raise ImageSkip("no_image")
    path = Path(path)
    if path.is_dir():
        raise ImageSkip("not_a_file", f"{path}: is a folder, not an image file")
    if not path.is_file():
        raise ImageSkip("missing_file", f"{path}: {why_not_a_file(path)}")
    try:
        with Image.open(path) as image:
            check_size(path, image.width, image.height, max_pixels)
            image.load()  # a truncated file fails here, not at open
            return to_rgb(image)
    except ImageSkip:
        raise
    except Image.DecompressionBombError as err:
        raise ImageSkip("too_large", f"{path}: {err}") from None
    except Exception as err:  # PIL raises many kinds for broken files (OSError, SyntaxError, struct.error, ...)
        raise ImageSkip("corrupt", f"{path}: {failure(err)}") from None


def why_not_a_file(path: Path) -> str:
    """What is at ``path`` instead of an image file: a loop of links is not an absent file to look for."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symlink loop"
        if path.is_symlink():
            return f"broken symlink (to {os.readlink(path)})"
        return "no such file" if err.errno == errno.ENOENT else (err.strerror or "cannot be read").lower()
    return "not a regular file"


def check_size(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    """Raise ImageSkip too_large for an image over ``max_pixels`` or thinner than 1 to ``MAX_ASPECT``."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageSkip("too_large", f"{path}: {width}x{height} pixels is over {max_pixels}")
    if min(width, height) > 0 and max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageSkip("too_large", f"{path}: {width}x{height} pixels: its long side is over {MAX_ASPECT} times "
                                     f"its short side")


def failure(err: BaseException) -> str:
    """An exception as one detail line; a MemoryError has no message of its own."""
    message = str(err) or ("out of memory" if isinstance(err, MemoryError) else "no message")
    return f"{type(err).__name__}: {message}"


def image_paths(manifest: Manifest, image_root: str | os.PathLike | None = None) -> list[Any]:
    """The manifest's image paths, relative ones taken from ``image_root``; a missing one stays as it is.

    When not one of the paths names a file, the paths are wrong, not the images: an ExtractError names the
    first ones rather than a store of items without elements."""
    paths = list(manifest.frame["image"])
    if image_root is not None:
        paths = [p if is_missing(p) else str(Path(image_root) / p) for p in paths]  # absolute: kept
    given = [p for p in paths if not is_missing(p)]
    if given and not any(os.path.isfile(p) for p in given):
        shown = ", ".join(repr(str(p)) for p in given[:3])
        raise ExtractError(f"none of the manifest's {len(given)} image paths is a file (first: {shown}; "
                           f"working folder {os.getcwd()!r}): prepare the manifest again where the images are, "
                           f"or, for a table, set datasets.<name>.image_root to the folder its relative image paths "
                           f"start from")
    return paths


def keep_image(image: Image.Image) -> Image.Image:
    return image


class ImageFiles(Dataset):
    """``transform`` of each decoded image, by manifest row; raises ImageSkip."""

    def __init__(self, paths: list[Any], transform: Callable[[Image.Image], Any] = keep_image,
                 max_pixels: int | None = None) -> None:
        self.paths, self.transform, self.max_pixels = paths, transform, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        image = open_image(self.paths[i], self.max_pixels)
        try:
            return self.transform(image)
        except Exception as err:  # a decodable image the transform cannot take (e.g. 0 pixels wide)
            raise ImageSkip("corrupt", f"{self.paths[i]}: {failure(err)}") from None


def run_per_image(
    manifest: Manifest,
    writer: RaggedWriter,
    tally: RunTally,
    process: Callable[[Any], list[Elements]],
    runtime: Runtime,
    *,
    transform: Callable[[Image.Image], Any] = keep_image,
    **loop: Any,
) -> None:
    """``run_items`` (``loop``: its keywords) over the manifest's images, each decoded and ``transform``-ed
    in a worker; relative paths are taken from ``runtime.image_root``, and ``runtime.max_pixels`` also
    refuses images PIL itself would still open."""
    inputs = ImageFiles(image_paths(manifest, runtime.image_root), transform, runtime.max_pixels)
    run_items([str(i) for i in manifest.frame["id"]], inputs, writer, tally, process, runtime, **loop)
