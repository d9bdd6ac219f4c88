"""A generated table shaped like Ads-Parallelity (Zhang et al. 2018; DMMS Sec. 4.1): ads whose image and
slogan say the same thing or not, written as a CSV and PNG images and read back by ``load_table``.

Four ad themes, each with an image motif and slogans; an ad is "parallel" when its slogan's theme is its
image's theme. Telling needs both modalities: neither the image nor the slogan alone says it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from mmsets.data.demo import check_generator
from mmsets.data.manifest import Manifest
from mmsets.data.table import write_table_manifest
from mmsets.io import atomic_path

THEMES = ("sun", "sea", "forest", "city")
SLOGANS = {
    "sun": ["Soak up the summer sun", "Bright days start here", "Feel the warm sunshine", "Golden light all day long"],
    "sea": ["Dive into the deep blue sea", "Ride the ocean waves", "Sail away this weekend", "Let the tide take you"],
    "forest": ["Breathe the fresh forest air", "Walk among the tall pines", "Return to the green woods",
               "Nature grows here"],
    "city": ["Live the big city nights", "Downtown never sleeps", "Your skyline, your rules", "Rise above the streets"],
}
APPEAL = {"sun": 0.6, "sea": 0.3, "forest": 0.0, "city": -0.3}  # the regression target's theme effect
DEMO_COLUMNS = {"id_column": "id", "image_column": "image", "text_columns": ["slogan"],
                "categorical_columns": ["naturalness", "concreteness"]}
DEMO_LABELS = {"binary": "parallel", "regression": "appeal"}


def generate_table_demo(out_dir: str | os.PathLike, n_items: int = 200, seed: int = 0, task: str = "binary",
                        image_size: int = 64, missing_image: float = 0.05) -> dict[str, Any]:
    """Write ``out_dir/table.csv`` and ``out_dir/images/<id>.png`` (PIL only) shaped like Ads-Parallelity.

    Columns: id, image (relative path, empty for ``missing_image`` of the items), slogan, naturalness
    and concreteness (ratings 1-5), parallel ("parallel" when the slogan's theme is the image's,
    half of the items), appeal (a float around 1.5-3.7: 2 + the image theme's effect + 0.8 if parallel
    + concreteness / 10 + noise; positive, so MAPE means something).
    Returns the ``load_table`` keyword arguments (``path`` included) for ``task`` ("binary": the
    parallel label, "regression": appeal).
    """
    if task not in DEMO_LABELS:
        raise ValueError(f"task {task!r} is not one of {sorted(DEMO_LABELS)}")
    check_generator("table_demo", {"n_items": n_items, "seed": seed, "image_size": image_size},
                    {"missing_image": missing_image})
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    width = max(3, len(str(n_items)))
    parallel = rng.permutation(np.arange(n_items) % 2 == 0)  # exactly half, in random order
    no_image = set(rng.permutation(n_items)[: round(missing_image * n_items)].tolist())
    rows = []
    for i in range(n_items):
        item_id = f"ad-{i + 1:0{width}d}"
        theme = THEMES[rng.integers(len(THEMES))]
        text_theme = theme if parallel[i] else THEMES[(THEMES.index(theme) + rng.integers(1, len(THEMES))) % 4]
        image = _draw_ad(rng, theme, image_size)  # drawn even when dropped: the same rng stream
        relative = f"images/{item_id}.png"
        if i not in no_image:
            with atomic_path(out_dir / relative) as tmp:
                image.save(tmp, format="PNG")
        natural = int(np.clip(rng.normal(2.0 if theme == "city" else 4.0, 0.8), 1, 5).round())
        concrete = int(rng.integers(1, 6))
        appeal = 2.0 + APPEAL[theme] + 0.8 * parallel[i] + concrete / 10 + rng.normal(0, 0.15)
        rows.append({"id": item_id, "image": "" if i in no_image else relative,
                     "slogan": str(rng.choice(SLOGANS[text_theme])), "naturalness": natural,
                     "concreteness": concrete, "parallel": "parallel" if parallel[i] else "non-parallel",
                     # Ads-Parallelity's finer classes; here an equivalent pair is one whose slogan is concrete
                     "parallel_type": ("parallel-equivalent" if concrete >= 3 else "parallel-non-equivalent")
                     if parallel[i] else "non-parallel",
                     "appeal": round(float(appeal), 4)})
    table = out_dir / "table.csv"
    with atomic_path(table) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    fine = {"fine_label_column": "parallel_type"} if task == "binary" else {}
    return {"path": str(table), **DEMO_COLUMNS, **fine, "label_column": DEMO_LABELS[task], "task": task,
            "dataset": f"ads-demo-{task}"}


def write_table_demo(out_dir: str | os.PathLike, manifest_path: str | os.PathLike,
                     split_fractions: Sequence[float] = (0.7, 0.1, 0.2), split_seed: int = 0,
                     split_stratify: bool = True, **kwargs: Any) -> Manifest:
    """``generate_table_demo(out_dir, **kwargs)`` loaded, split as a table without a split column is
    (``split_fractions``, ``split_seed``, ``split_stratify``: ``mmsets.data.table.load_table``), and written to
    ``manifest_path``."""
    load_kwargs = generate_table_demo(out_dir, **kwargs)
    return write_table_manifest(load_kwargs.pop("path"), manifest_path, split_fractions=split_fractions,
                                split_seed=split_seed, split_stratify=split_stratify, **load_kwargs)


def _jittered(rng: np.random.Generator, base: tuple[int, int, int], jitter: int = 25) -> tuple[int, int, int]:
    """``base`` with each channel moved at random by up to ``jitter``."""
    return tuple(int(np.clip(c + rng.integers(-jitter, jitter + 1), 0, 255)) for c in base)


def _draw_ad(rng: np.random.Generator, theme: str, size: int) -> Image.Image:
    """A coarse motif per theme (what a frozen ImageNet CNN can tell apart at 64-224 px), plus clutter."""
    backgrounds = {"sun": (120, 190, 240), "sea": (150, 200, 230), "forest": (215, 230, 200), "city": (60, 60, 90)}
    img = Image.new("RGB", (size, size), _jittered(rng, backgrounds[theme]))
    draw = ImageDraw.Draw(img)
    u = lambda lo, hi: float(rng.uniform(lo * size, hi * size))  # noqa: E731
    if theme == "sun":
        r, cx, cy = u(0.15, 0.25), u(0.3, 0.7), u(0.25, 0.45)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_jittered(rng, (250, 210, 40)))
        draw.rectangle((0, u(0.75, 0.85), size, size), fill=_jittered(rng, (230, 200, 140)))
    elif theme == "sea":
        top = u(0.4, 0.55)
        draw.rectangle((0, top, size, size), fill=_jittered(rng, (20, 70, 160)))
        for k in range(4):
            y = top + (k + 1) * (size - top) / 5
            draw.arc((u(-0.2, 0.2), y - size * 0.05, u(0.8, 1.2), y + size * 0.05), 0, 180, fill=(235, 245, 255),
                     width=max(1, size // 32))
    elif theme == "forest":
        for _ in range(rng.integers(3, 6)):
            cx, base, h = u(0.05, 0.95), u(0.75, 1.0), u(0.3, 0.55)
            w = h * 0.45
            draw.polygon([(cx - w, base), (cx + w, base), (cx, base - h)], fill=_jittered(rng, (30, 110, 40)))
    else:
        x = 0.0
        while x < size:
            w, h = u(0.1, 0.22), u(0.3, 0.8)
            draw.rectangle((x, size - h, x + w, size), fill=_jittered(rng, (110, 110, 120)))
            for _ in range(3):
                wx, wy = x + float(rng.uniform(0.2, 0.7)) * w, size - float(rng.uniform(0.1, 0.9)) * h
                draw.rectangle((wx, wy, wx + size * 0.03, wy + size * 0.03), fill=(250, 220, 90))
            x += w + u(0.0, 0.04)
    for _ in range(rng.integers(0, 3)):  # neutral clutter
        x0, y0 = u(0, 0.9), u(0, 0.9)
        draw.rectangle((x0, y0, x0 + u(0.03, 0.1), y0 + u(0.03, 0.1)), fill=_jittered(rng, (128, 128, 128), 100))
    return img
