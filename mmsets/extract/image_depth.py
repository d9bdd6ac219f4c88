"""Images of more than 8 bits per channel brought to 8 bits by scaling, before any conversion to RGB.

Pillow's own conversion of a 16-bit (``I;16``) or 32-bit (``I``, ``F``) image to ``L`` or ``RGB`` clips every value
above 255 to white: a 16-bit PNG comes out nearly all white. Here:

- ``I;16`` (and ``I;16B``, ``I;16L``, ``I;16N``): each value times 255/65535;
- ``I`` (Pillow's mode for 16-bit PNGs and 32-bit integer TIFFs): the same when every value lies in 0..65535,
  else stretched from the image's lowest to its highest value;
- ``F`` (float TIFF): values in 0..1 times 255, else stretched from the lowest to the highest finite value
  (NaN as the lowest).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SIXTEEN_BIT_MAX = 65535


def is_high_depth(image: Image.Image) -> bool:
    return image.mode.startswith("I") or image.mode == "F"


def to_eight_bit(image: Image.Image) -> Image.Image:
    """``image`` as an 8-bit ``L`` image when it has more than 8 bits per value, else as it is."""
    if not is_high_depth(image):
        return image
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16") or (image.mode == "I" and _within(values, 0, SIXTEEN_BIT_MAX)):
        scaled = values * (255 / SIXTEEN_BIT_MAX)
    elif image.mode == "F" and _within(values, 0, 1):
        scaled = values * 255
    else:
        scaled = _stretched(values)
    eight_bit = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))  # 2-D uint8: L
    eight_bit.info = dict(image.info)  # EXIF orientation stays for to_rgb
    return eight_bit


def _within(values: np.ndarray, low: float, high: float) -> bool:
    finite = values[np.isfinite(values)]
    return finite.size == values.size and (not finite.size or (finite.min() >= low and finite.max() <= high))


def _stretched(values: np.ndarray) -> np.ndarray:
    """``values`` from their lowest (and NaN) to their highest finite value mapped onto 0..255."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return np.zeros_like(values)
    low, high = finite.min(), finite.max()
    values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
    return np.zeros_like(values) if high == low else (values - low) * (255 / (high - low))
