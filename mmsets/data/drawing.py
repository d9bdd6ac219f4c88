"""What the poster generators (demo, rehearsal) draw with: colours from HSV, star outlines and PIL's own font."""

from __future__ import annotations

import colorsys
import functools
import math

from PIL import ImageFont


@functools.lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont:
    """PIL's default font at ``size`` (no font files needed)."""
    return ImageFont.load_default(size=size)


def hsv_color(h: float, s: float, v: float) -> tuple[int, int, int]:
    """An RGB colour from hue (any real: taken modulo 1), saturation and value in [0, 1]."""
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def star(cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    """The ten corners of a five-pointed star of outer radius ``r`` around (cx, cy), turned by ``rot``."""
    return [
        (cx + (r if k % 2 == 0 else r * 0.42) * math.cos(rot + k * math.pi / 5),
         cy + (r if k % 2 == 0 else r * 0.42) * math.sin(rot + k * math.pi / 5))
        for k in range(10)
    ]
