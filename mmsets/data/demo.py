"""The offline demo dataset: synthetic movie posters and plots whose genres need both modalities.

Each item is a poster (PNG, drawn with PIL only), a rendered title and a short generated plot, with
1-3 genres out of six. The genres are split across the modalities so that a model reading the image
and the plot beats either alone:

    genre       image cue                              plot cue
    scifi       big white/cyan five-pointed stars      none
    comedy      big saturated orange/pink/yellow discs none
    romance     none                                   love/wedding phrases
    crime       none                                   detective/murder/heist phrases
    horror      near-black background                  ghost/demon/curse phrases
    adventure   bold diagonal earth-tone stripes       quest/treasure/expedition phrases

For horror and adventure each item shows the cue in the image only, the plot only or both, so even these are
best read from both. A plot is one sentence per line, and the text extractor makes each line an element of the
text set: a genre the plot tells takes two or three of its sentences, while many plots also hold a single
decoy sentence of a genre they lack. How many sentences of a kind there are, not whether there is one, tells
the genre: set poolings that count (sum) can read it, a max cannot. Cues are big, coarse shapes and colour
fields because the frozen image encoder is an ImageNet CNN looking at the whole poster (128-224 px); plots are
built from templates mixing genre phrases with genre-neutral distractor sentences so a sentence encoder
(MiniLM) picks up the topic rather than a fixed string. Every poster also carries neutral clutter (rectangles,
bars), a few cues fire on items without the genre, and titles are genre-neutral, so nothing is trivially
separable. Some items lack the image or the plot (never both). Everything follows from ``seed`` but the
train/dev/test split: ``split_fractions`` drawn with ``split_seed``, stratified by genre.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from mmsets.data.drawing import font, hsv_color, star
from mmsets.data.manifest import Manifest, write_manifest
from mmsets.data.splits import item_splits
from mmsets.io import atomic_path
from mmsets.plan.spec import number_problem

GENRES = ("scifi", "comedy", "romance", "crime", "horror", "adventure")
CUES = {"scifi": "image", "comedy": "image", "romance": "text", "crime": "text", "horror": "both", "adventure": "both"}
GENRE_WEIGHTS = np.array([1.0, 1.2, 1.1, 1.0, 0.8, 0.9])
N_GENRES_P = (0.45, 0.4, 0.15)  # 1, 2 or 3 genres per item
BOTH_P = (0.3, 0.3, 0.4)  # a "both" genre shows in: the image only, the plot only, both
FALSE_CUE_P = 0.04  # a cue appears although the item lacks the genre
DECOY_P = 0.3  # a plot holds one sentence of a text genre it lacks (a true one holds two or three)

NAMES = ["Mara", "Tobias", "Ines", "Oskar", "Lena", "Victor", "Nadia", "Hugo", "Clara", "Felix", "Rosa", "Emil"]
JOBS = ["teacher", "mechanic", "nurse", "baker", "journalist", "farmer", "clerk", "pilot", "student", "painter"]
PLACES = ["a small harbour town", "the capital", "a mountain village", "a grey suburb", "a border town",
          "the old quarter"]
ADJ = ["Silent", "Golden", "Last", "Hidden", "Broken", "Second", "Distant", "Quiet", "Northern", "Long", "Paper",
       "Open"]
NOUNS = ["River", "Road", "Summer", "Window", "Garden", "Letter", "Harbor", "Bridge", "Season", "Promise", "Station"]
PHRASES = {
    "romance": [
        "{a} falls madly in love with {b}",
        "a tender romance blossoms between {a} and {b}",
        "{a} and {b} plan their wedding despite their families",
        "{a} must choose between two lovers",
        "a love letter from {b} breaks {a}'s heart",
        "{a} and {b} share a first kiss under the rain",
    ],
    "crime": [
        "a detective investigates a brutal murder in {p}",
        "{a} plans a bank heist with a gang of thieves",
        "the police hunt a ruthless killer",
        "{a} is framed for a crime and must clear their name",
        "a mob boss controls the drug trade",
        "{a} testifies against the mafia in a murder trial",
    ],
    "horror": [
        "a vengeful ghost haunts the old house",
        "{a} is stalked by a demon at night",
        "a cursed doll awakens at midnight",
        "zombies rise from the graveyard of {p}",
        "a vampire lurks in the haunted basement",
        "{a} is possessed by the spirit of a dead witch",
    ],
    "adventure": [
        "{a} sets out on a quest to find a lost treasure",
        "an expedition into the jungle searches for an ancient temple",
        "{a} and {b} sail with pirates across the ocean",
        "a perilous journey across the desert begins",
        "{a} follows a treasure map over the mountains",
        "explorers race to a hidden city",
    ],
}
DISTRACTORS = [
    "{a} drinks coffee every morning",
    "the weather in {p} keeps changing",
    "an old friend of {a} returns",
    "the family gathers for a long dinner",
    "{a} works late hours at the office",
    "{b} repairs an old bicycle",
    "a new neighbour moves in next door",
    "{a} and {b} argue about money",
    "the summer holidays are almost over",
]


def generate_demo(
    out_dir: str | os.PathLike,
    *,
    n_items: int = 400,
    seed: int = 0,
    image_size: int = 128,
    missing_image: float = 0.1,
    missing_text: float = 0.1,
    split_fractions: tuple[float, float, float] = (0.6, 0.15, 0.25),
    split_seed: int = 0,
    split_stratify: bool = True,
) -> Manifest:
    """Write ``out_dir/images/<id>.png`` for the items that have an image and return the manifest."""
    check_generator("demo", {"n_items": n_items, "seed": seed, "image_size": image_size, "split_seed": split_seed},
                    {"missing_image": missing_image, "missing_text": missing_text})
    if missing_image + missing_text > 1:
        raise ValueError(f"missing_image + missing_text = {missing_image + missing_text} > 1")
    out_dir = Path(out_dir).absolute()  # the manifest holds absolute image paths: extraction runs from anywhere
    rng = np.random.default_rng(seed)
    width = max(4, len(str(n_items)))
    ids = [f"demo-{i + 1:0{width}d}" for i in range(n_items)]

    # Exact counts (not per-item coin flips) so the rates hold for small n too.
    order = rng.permutation(n_items)
    n_img, n_txt = round(missing_image * n_items), round(missing_text * n_items)
    no_image, no_text = set(order[:n_img]), set(order[n_img : n_img + n_txt])
    rng.permutation(n_items)  # where the splits were once drawn: a seed still makes the same items

    rows = []
    for i, item_id in enumerate(ids):
        labels = _sample_labels(rng)
        show_image, show_text, decoys = _sample_cues(rng, labels)
        title = f"The {rng.choice(ADJ)} {rng.choice(NOUNS)}"
        poster = _draw_poster(rng, show_image, title, image_size)  # drawn even if dropped: same rng stream
        plot = _write_plot(rng, show_text, decoys)
        image = None
        if i not in no_image:
            image = str(out_dir / "images" / f"{item_id}.png")
            with atomic_path(image) as tmp:
                poster.save(tmp, format="PNG")
        rows.append({
            "id": item_id,
            "image": image,
            "text_title": title,
            "text_plot": None if i in no_text else plot,
            "labels": [g for g in GENRES if g in labels],
        })
    extra = {"generator": "mmsets.data.demo", "seed": seed, "image_size": image_size, "cues": CUES}
    frame = pd.DataFrame(rows, dtype=object)  # keeps None (pandas 3 would turn it into NaN in str columns)
    frame.insert(1, "split", item_splits(n_items, split_fractions, split_seed, frame["labels"].tolist(),
                                         split_stratify))
    return Manifest(frame, list(GENRES), task="multilabel", dataset="demo", extra=extra)


def check_generator(kind: str, integers: dict[str, Any], shares: dict[str, Any]) -> None:
    """Raise a one-line ValueError naming the first of a generator's settings that is not a non-negative integer
    (``integers``) or a finite number in [0, 1] (``shares``): ``range(40.0)`` would fail deep inside."""
    for key, value in integers.items():
        problem = number_problem(value, integral=True) or (f"{value} is below 0" if value < 0 else None)
        if problem:
            raise ValueError(f"{kind} {key}: {problem}")
    for key, value in shares.items():
        problem = number_problem(value, integral=False) or (None if 0 <= value <= 1 else f"{value} is not in [0, 1]")
        if problem:
            raise ValueError(f"{kind} {key}: {problem}")


def write_demo(out_dir: str | os.PathLike, manifest_path: str | os.PathLike, **kwargs) -> Manifest:
    """Generate the demo dataset into ``out_dir`` and write its manifest (atomically) to ``manifest_path``."""
    manifest = generate_demo(out_dir, **kwargs)
    write_manifest(manifest, manifest_path)
    return manifest


def _sample_labels(rng: np.random.Generator) -> set[str]:
    k = rng.choice(len(N_GENRES_P), p=N_GENRES_P) + 1
    picked = rng.choice(len(GENRES), size=k, replace=False, p=GENRE_WEIGHTS / GENRE_WEIGHTS.sum())
    return {GENRES[j] for j in picked}


def _sample_cues(rng: np.random.Generator, labels: set[str]) -> tuple[set[str], set[str], set[str]]:
    """Which genres the poster shows, which the plot tells (rare false cues included) and which the plot
    names in one decoy sentence only."""
    show_image, show_text = set(), set()
    decoys = {g for g in GENRES if CUES[g] != "image" and g not in labels and rng.random() < DECOY_P}
    for g in GENRES:
        where = CUES[g]
        if g in labels and where == "both":
            where = ("image", "text", "both")[rng.choice(3, p=BOTH_P)]
        elif g not in labels:
            where = where if rng.random() < FALSE_CUE_P else "none"
        if where in ("image", "both"):
            show_image.add(g)
        if where in ("text", "both"):
            show_text.add(g)
    return show_image, show_text, decoys - show_text


def _draw_poster(rng: np.random.Generator, cues: set[str], title: str, size: int) -> Image.Image:
    dark = "horror" in cues
    value = rng.uniform(0.03, 0.15) if dark else rng.uniform(0.55, 0.9)
    img = Image.new("RGB", (size, size), hsv_color(rng.random(), rng.uniform(0.2, 0.6), value))
    draw = ImageDraw.Draw(img)
    u = lambda lo, hi: float(rng.uniform(lo * size, hi * size))  # noqa: E731

    for _ in range(rng.integers(2, 5)):  # neutral clutter: every poster has some
        x, y, w, h = u(0, 0.8), u(0, 0.9), u(0.05, 0.3), u(0.02, 0.15)
        draw.rectangle((x, y, x + w, y + h), fill=hsv_color(rng.random(), rng.uniform(0.1, 0.4), rng.uniform(0.3, 0.8)))
    if "adventure" in cues:  # bold diagonal stripes over the lower half
        band = Image.new("RGB", (size, size))
        bdraw = ImageDraw.Draw(band)
        step = size / 6
        tones = [hsv_color(rng.uniform(0.05, 0.12), 0.7, 0.55), hsv_color(rng.uniform(0.22, 0.33), 0.7, 0.45)]
        for k in range(-6, 14):
            x0 = k * step
            bdraw.polygon([(x0, size), (x0 + step, size), (x0 + step + size, 0), (x0 + size, 0)], fill=tones[k % 2])
        top = int(size * rng.uniform(0.45, 0.6))
        img.paste(band.crop((0, top, size, size)), (0, top))
    if "comedy" in cues:
        for _ in range(rng.integers(3, 6)):
            r, cx, cy = u(0.1, 0.17), u(0.1, 0.9), u(0.25, 0.9)
            fill = hsv_color(rng.choice([0.02, 0.09, 0.15, 0.9]), 0.9, 1.0)
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    if "scifi" in cues:
        for _ in range(rng.integers(3, 6)):
            color = hsv_color(rng.choice([0.5, 0.55, 0.6]), rng.uniform(0.0, 0.35), 1.0)
            draw.polygon(star(u(0.1, 0.9), u(0.25, 0.9), u(0.09, 0.15), rng.uniform(0, 2 * math.pi)), fill=color)

    # Title band: genre-neutral words, drawn last so it stays readable (an OCR extractor can find it).
    text, font_size = title.upper(), max(8, size // 10)
    while font_size > 6 and font(font_size).getlength(text) > 0.94 * size:
        font_size -= 1
    draw.text((size / 2, u(0.03, 0.12)), text, font=font(font_size), anchor="mt",
              fill=(240, 240, 240) if value < 0.5 else (20, 20, 20))
    return img


def _write_plot(rng: np.random.Generator, cues: set[str], decoys: set[str] = frozenset()) -> str:
    """One sentence per line: two or three of each genre told, one of each decoy, one or two neutral ones."""
    a, b = rng.choice(NAMES, size=2, replace=False)
    fill = {"a": a, "b": b, "p": rng.choice(PLACES)}
    body = [str(p) for g in sorted(cues) for p in rng.choice(PHRASES[g], size=rng.integers(2, 4), replace=False)]
    body += [str(rng.choice(PHRASES[g])) for g in sorted(decoys)]
    body += [str(d) for d in rng.choice(DISTRACTORS, size=rng.integers(1, 3), replace=False)]
    body = [body[j] for j in rng.permutation(len(body))]
    sentences = [f"{a} is a {rng.choice(JOBS)} in {fill['p']}"] + [s.format(**fill) for s in body]
    return "\n".join(s[0].upper() + s[1:] + "." for s in sentences)
