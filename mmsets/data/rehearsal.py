"""The rehearsal dataset: generated items shaped like MM-IMDb, at any size (its own is 25,959).

It rehearses the real job's scale without its data: every extractor and model sees items of MM-IMDb's
shape and number, so the wall time, memory and store sizes of a run are those of the real one. What is
generated, and from which figures (summary statistics only; nothing of the sample is copied):

    genres      23, MM-IMDb's; frequencies and genres per item as in the real sample (below)
    plot        paragraphs of English-like text from a fixed vocabulary, joined one per line as
                ``mmsets.data.mmimdb`` joins MM-IMDb's list of summaries; paragraphs per plot and words
                per paragraph follow the sample
    title       1-6 words
    poster      a JPEG at the sample's size and JPEG qualities, with 0..max_objects simple shapes,
                0..max_faces face-like drawings and a few text lines (the title among them, for OCR)

The figures come from the real MM-IMDb sample at /work/shared/data/mmimdb-sample (1,136 items of the
official dev split; README there). The MM-IMDb paper (Arevalo et al. 2017, Table 1) was not at hand, so
the genre frequencies are the sample's. The sample stores each plot as one string in which the summaries
run together ("...ends.Next summary..."); paragraphs were counted at those seams.

A genre is slightly predictable from the words (a few of a plot's words are its genres' cue words) and
from the poster (its background hue is often its genre's), so models learn something, cheaply.
Everything follows from ``seed``: the labels and splits from one stream, each item's text and poster
from its own, so a poster does not depend on the items before it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from mmsets.data.demo import check_generator
from mmsets.data.drawing import font, hsv_color, star
from mmsets.data.manifest import Manifest, write_manifest
from mmsets.data.mmimdb import GENRES
from mmsets.data.splits import shuffled_splits
from mmsets.io import atomic_path

# Items of the sample carrying each genre (of 1,136); their sum over the items is the genres per item.
GENRE_COUNTS = {
    "Drama": 705, "Comedy": 466, "Romance": 271, "Thriller": 179, "Crime": 116, "Horror": 100,
    "Mystery": 92, "Action": 83, "Sci-Fi": 73, "Adventure": 72, "Fantasy": 68, "War": 63, "Family": 63,
    "Documentary": 57, "Biography": 45, "History": 43, "Music": 42, "Musical": 32, "Western": 26,
    "Sport": 25, "Animation": 24, "Short": 15, "Film-Noir": 7,
}
N_GENRES_COUNTS = (295, 379, 291, 124, 38, 8, 1)  # items with 1, 2, ..., 7 genres
PARAGRAPH_COUNTS = (578, 356, 138, 40, 19, 4, 0, 1)  # items with 1, 2, ..., 8 plot paragraphs
# Words per paragraph (1,991 paragraphs): percentiles, interpolated in log space when drawing.
WORD_PERCENTILES = (0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 99, 100)
WORDS_AT = (1, 16, 21, 25, 28, 34, 42, 50, 59, 67, 75, 84, 92, 102, 110, 119, 132, 153, 193, 252, 372, 1649)
# Every poster of the sample is 182x268 (IMDb's thumbnail; MM-IMDb's own JPEGs were not at hand), in
# 4:2:0 JPEG at libjpeg quality 95 (503 posters) or 82 (296).
POSTER_SIZES = {(182, 268): 1.0}
JPEG_QUALITIES = {95: 503, 82: 296}
TITLE_WORDS_P = (0.15, 0.3, 0.25, 0.15, 0.1, 0.05)  # 1..6 words (the sample has no titles)
MM_IMDB_SPLITS = (15552, 2608, 7799)  # train, dev, test of MM-IMDb's split.json
FILES_PER_FOLDER = 1000
CUE_P = 0.06  # share of a plot's content words taken from its genres' cue words
HUE_CUE_P = 0.5  # share of posters whose background hue is one of their genres'
SKIN = [(255, 224, 196), (241, 194, 160), (224, 172, 125), (198, 134, 90), (141, 85, 54), (92, 58, 38)]

NAMES = """Adam Alma Arthur Bella Boris Carmen Cyrus Daisy Dmitri Edith Elias Esther Frank Greta Harvey
    Helen Ivan Iris Jack Julia Karl Laura Leo Lucy Martin Maya Nina Noah Olga Oscar Paul Rita Ruth Sam Sofia
    Thomas Vera Walter Yara Zoe""".split()
NOUNS = """house road city village river town family friend brother sister father mother son daughter
    wife husband neighbour stranger teacher doctor lawyer farmer soldier sailor writer painter student
    letter secret promise debt job farm shop hotel school hospital office train ship car bridge island
    mountain forest valley harbour coast street apartment factory church castle prison library garden
    night morning winter summer storm fire rain money gold fortune photograph record diary key door
    window map plan deal game trip journey return choice mistake past future truth lie dream memory
    voice name face world country border war peace life death child baby friendship rival partner
    boss gang group crew club party trial case story book song film stage career company""".split()
VERBS = """meets finds loses leaves joins helps follows discovers hides chases watches visits marries
    trusts betrays saves fights faces loves hates remembers forgets builds breaks opens closes sells
    buys steals returns reaches crosses escapes enters defends protects questions tests writes reads
    calls answers seeks hunts ruins wins owes inherits rescues confronts avoids accepts refuses
    teaches learns changes hires fires risks tracks convinces warns joins doubts""".split()
ADJECTIVES = """young old small big quiet strange lonely wealthy poor famous unknown new last first
    local foreign secret dangerous gentle bitter ambitious honest stubborn clever reckless shy proud
    kind cruel distant hidden broken lost forgotten faithful restless desperate cheerful grim bright
    dark silent wild ordinary mysterious rural modern ancient""".split()
PREPOSITIONS = "in with from against after before near for without behind beyond across into".split()
DETERMINERS = "the a his her their its this that every one".split()
CONJUNCTIONS = "and but while when as until because although".split()
CUE_WORDS = {
    "Drama": "grief struggle marriage illness loss regret hardship sacrifice",
    "Comedy": "hilarious prank clumsy wacky jokes zany comic mishap",
    "Romance": "love lovers kiss wedding heart passion romance sweetheart",
    "Thriller": "conspiracy suspense hostage threat assassin pursuit paranoia deadline",
    "Crime": "detective murder heist police gangster robbery killer mafia",
    "Action": "explosion gunfire commando mission combat mercenary showdown firefight",
    "Adventure": "quest treasure expedition jungle explorer voyage pirates temple",
    "Horror": "ghost demon curse haunted zombie vampire nightmare possessed",
    "Documentary": "footage interviews archival filmmaker testimony reportage chronicle documentary",
    "Mystery": "clue riddle disappearance puzzle enigma sleuth whodunit suspect",
    "Sci-Fi": "spaceship alien robot planet galaxy laser android starship",
    "Fantasy": "wizard dragon magic sorcerer enchanted spell fairy elf",
    "Family": "children puppy parents siblings kids grandmother toys holiday",
    "Biography": "biography legacy achievements memoir lifetime pioneer inventor celebrated",
    "War": "soldiers army battlefield regiment trenches invasion platoon wartime",
    "History": "empire dynasty revolution monarch historical medieval throne conquest",
    "Animation": "cartoon animated critters toon fable creatures squirrel talking",
    "Musical": "singing dance chorus songs broadway showtune rehearsal ballroom",
    "Music": "band concert guitar album singer tour musician drummer",
    "Western": "cowboy sheriff ranch outlaw frontier saloon cattle gunslinger",
    "Sport": "team coach championship boxing tournament stadium athlete league",
    "Short": "vignette glimpse fragment sketch snapshot instant miniature brief",
    "Film-Noir": "femme fatale alibi dame racketeer nightclub cynical shadows",
}
# A clause is a sequence of word classes; a sentence is one to three clauses.
CLAUSES = [
    "N V D A n P D n", "D A n V N", "N C N V D n P D A n", "P D n N V D n", "D n P D n V N",
    "N V P D A n", "D A n V D n P N", "N V D n C D n",
]
_CLASSES = {"N": NAMES, "n": NOUNS, "V": VERBS, "A": ADJECTIVES, "P": PREPOSITIONS, "D": DETERMINERS,
            "C": ["and"], "J": CONJUNCTIONS, "T": ["the"]}
_CONTENT = "nVA"  # classes a cue word may replace
_FUNCTION = "CDJPT"  # classes a sentence does not end on


def write_rehearsal(out_dir: str | os.PathLike, manifest_path: str | os.PathLike, **kwargs) -> Manifest:
    """Generate the rehearsal dataset into ``out_dir``, then write its manifest (atomically, and last: a
    manifest that exists has all its posters)."""
    manifest = generate_rehearsal(out_dir, **kwargs)
    write_manifest(manifest, manifest_path)
    return manifest


def generate_rehearsal(
    out_dir: str | os.PathLike,
    *,
    n_items: int = 25959,
    seed: int = 0,
    splits: tuple[float, float, float] = MM_IMDB_SPLITS,
    missing_image: float = 0.0,
    max_objects: int = 10,
    max_faces: int = 10,
) -> Manifest:
    """Write ``out_dir/<folder>/<id>.jpeg`` (at most 1,000 per folder) and return the manifest."""
    check_generator("rehearsal", {"n_items": n_items, "seed": seed, "max_objects": max_objects,
                                  "max_faces": max_faces}, {"missing_image": missing_image})
    if n_items < 1:
        raise ValueError(f"n_items must be positive, got {n_items}")
    if not 0 <= missing_image <= 1:
        raise ValueError(f"missing_image must be in [0, 1], got {missing_image}")
    if len(splits) != 3 or min(splits) < 0 or sum(splits) <= 0:
        raise ValueError(f"splits must be three non-negative weights (train, dev, test), got {splits}")
    out_dir = Path(out_dir).absolute()  # absolute image paths in the manifest
    rng = np.random.default_rng([seed, 0])
    width = max(5, len(str(n_items)))
    folder_width = max(3, len(str((n_items - 1) // FILES_PER_FOLDER)))
    no_image = set(rng.permutation(n_items)[: round(missing_image * n_items)])  # exact count, as demo's
    split_of = shuffled_splits(rng, n_items, tuple(splits))
    labels = _assign_genres(rng, n_items)
    vocab = _Vocabulary()

    rows, objects, faces = [], 0, 0
    for i in range(n_items):
        item_id = f"rehearsal-{i + 1:0{width}d}"
        item_rng = np.random.default_rng([seed, 1, i])
        title = _title(item_rng)
        plot = "\n".join(vocab.paragraph(item_rng, labels[i], n) for n in _paragraph_lengths(item_rng))
        image = None
        if i not in no_image:
            image = str(out_dir / f"{i // FILES_PER_FOLDER:0{folder_width}d}" / f"{item_id}.jpeg")
            counts = _write_poster(item_rng, image, title, labels[i], max_objects, max_faces)
            objects, faces = objects + counts[0], faces + counts[1]
        rows.append({"id": item_id, "split": split_of[i], "image": image, "text_title": title,
                     "text_plot": plot, "labels": labels[i]})
    extra = {
        "generator": "mmsets.data.rehearsal", "seed": seed, "n_items": n_items, "splits": list(splits),
        "missing_image": missing_image, "max_objects": max_objects, "max_faces": max_faces,
        "objects_drawn": objects, "faces_drawn": faces,
    }
    frame = pd.DataFrame(rows, dtype=object)  # keeps None (pandas 3 would turn it into NaN in str columns)
    return Manifest(frame, list(GENRES), task="multilabel", dataset="rehearsal", extra=extra)


def _apportion(weights, total: int) -> np.ndarray:
    """``total`` split in proportion to ``weights`` by largest remainders (exact counts, any size)."""
    w = np.asarray(weights, dtype=float)
    share = w / w.sum() * total
    counts = np.floor(share).astype(int)
    counts[np.argsort(-(share - counts), kind="stable")[: total - counts.sum()]] += 1
    return counts


def _assign_genres(rng: np.random.Generator, n: int) -> list[list[str]]:
    """Every item's genres: exact numbers of items per genre count and per genre, as in the sample.

    Genres are dealt most frequent first, each to its number of items drawn (without replacement) in
    proportion to the genres an item still lacks, which fills almost every item exactly.
    """
    k = np.repeat(np.arange(1, len(N_GENRES_COUNTS) + 1), _apportion(N_GENRES_COUNTS, n))
    remaining = rng.permutation(k)
    freq = np.array([GENRE_COUNTS[g] for g in GENRES], dtype=float)
    per_genre = np.minimum(_apportion(freq, int(remaining.sum())), n)
    member = np.zeros((n, len(GENRES)), dtype=bool)
    for g in np.argsort(-per_genre, kind="stable"):
        eligible = np.flatnonzero(remaining > 0)
        take = min(int(per_genre[g]), len(eligible))
        if take == 0:
            continue
        keys = np.log(remaining[eligible]) + rng.gumbel(size=len(eligible))  # Gumbel top-k sampling
        chosen = eligible[np.argpartition(-keys, take - 1)[:take]]
        member[chosen, g] = True
        remaining[chosen] -= 1
    for i in np.flatnonzero(~member.any(axis=1)):  # left empty by a shortfall (rare): one genre at the rates
        member[i, rng.choice(len(GENRES), p=freq / freq.sum())] = True
    return [[GENRES[g] for g in np.flatnonzero(row)] for row in member]


def _paragraph_lengths(rng: np.random.Generator) -> np.ndarray:
    p = np.asarray(PARAGRAPH_COUNTS, dtype=float)
    n = rng.choice(len(p), p=p / p.sum()) + 1
    words = np.exp(np.interp(rng.uniform(0, 100, size=n), WORD_PERCENTILES, np.log(WORDS_AT)))
    return np.maximum(1, np.rint(words)).astype(int)


TITLE_PATTERNS = ("n", "A n", "T A n", "n P T n", "T A n P n", "T A n P T n")  # by number of words


def _title(rng: np.random.Generator) -> str:
    pattern = TITLE_PATTERNS[rng.choice(len(TITLE_WORDS_P), p=TITLE_WORDS_P)]
    words = [str(_CLASSES[c][rng.integers(len(_CLASSES[c]))]) for c in pattern.split()]
    return " ".join(w.capitalize() for w in words)


class _Vocabulary:
    """Word arrays per class, so a paragraph's words are drawn in a few vectorised steps."""

    def __init__(self) -> None:
        self.clauses = [clause.split() for clause in CLAUSES]
        self.classes = sorted(_CLASSES)
        self.words = [np.array(_CLASSES[c], dtype=object) for c in self.classes]
        self.content = np.isin(self.classes, list(_CONTENT))
        self.joiner = self.classes.index("J")
        self.cues = {g: np.array(CUE_WORDS[g].split(), dtype=object) for g in GENRES}

    def paragraph(self, rng: np.random.Generator, genres: list[str], n_words: int) -> str:
        """Exactly ``n_words`` words in sentences of one to three clauses joined by conjunctions."""
        classes, starts, total = [], [], 0
        while total < n_words:
            starts.append(total)
            for k, j in enumerate(rng.integers(len(self.clauses), size=rng.integers(1, 4))):
                clause = (["J"] if k else []) + self.clauses[j]
                classes += clause
                total += len(clause)
        if total > n_words and classes[n_words - 1] in _FUNCTION:  # cut mid-clause: end on a content word
            classes[n_words - 1] = "n"
        ids = np.searchsorted(self.classes, classes[:n_words])
        words = np.empty(len(ids), dtype=object)
        for c in np.unique(ids):
            at = np.flatnonzero(ids == c)
            words[at] = self.words[c][rng.integers(len(self.words[c]), size=len(at))]
        if genres:
            for at in np.flatnonzero(self.content[ids] & (rng.random(len(ids)) < CUE_P)):
                pool = self.cues[genres[rng.integers(len(genres))]]
                words[at] = pool[rng.integers(len(pool))]
        for at in np.flatnonzero(ids == self.joiner):
            if at > 0:
                words[at - 1] += ","
        ends = [s - 1 for s in starts[1:]] + [len(words) - 1]
        for s in starts:
            words[s] = words[s].capitalize()
        for e in ends:
            words[e] = words[e].rstrip(",") + "."
        return " ".join(words)


def _write_poster(rng: np.random.Generator, path: str, title: str, genres: list[str],
                  max_objects: int, max_faces: int) -> tuple[int, int]:
    """Draw and save one poster; return the numbers of object shapes and faces on it."""
    sizes = list(POSTER_SIZES)
    w, h = sizes[rng.choice(len(sizes), p=list(POSTER_SIZES.values()))]
    hue = rng.random()
    if genres and rng.random() < HUE_CUE_P:
        hue = GENRES.index(genres[rng.integers(len(genres))]) / len(GENRES) + rng.normal(0, 0.01)
    value = rng.uniform(0.15, 0.9)
    img = Image.new("RGB", (w, h), hsv_color(hue, rng.uniform(0.3, 0.8), value))
    draw = ImageDraw.Draw(img)
    band = int(h * rng.uniform(0.55, 0.8))  # a second colour field, as most posters have
    fill = hsv_color(hue + rng.uniform(-0.1, 0.1), rng.uniform(0.2, 0.7), rng.uniform(0.1, 0.6))
    draw.rectangle((0, band, w, h), fill=fill)

    n_objects = int(rng.integers(0, max_objects + 1))
    for _ in range(n_objects):
        _draw_object(draw, rng, w, h)
    n_faces = int(rng.integers(0, max_faces + 1))
    for _ in range(n_faces):
        _draw_face(draw, rng, w, h)
    _draw_text(draw, rng, w, h, title, value)
    quality = list(JPEG_QUALITIES)
    q = np.asarray(list(JPEG_QUALITIES.values()), dtype=float)
    with atomic_path(path) as tmp:
        img.save(tmp, format="JPEG", quality=int(quality[rng.choice(len(q), p=q / q.sum())]))
    return n_objects, n_faces


def _draw_object(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    r = float(rng.uniform(0.06, 0.16) * w)
    cx, cy = float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r))
    fill = hsv_color(rng.random(), rng.uniform(0.4, 1.0), rng.uniform(0.3, 1.0))
    kind = rng.integers(4)
    if kind == 0:
        draw.rectangle((cx - r, cy - r * rng.uniform(0.4, 1.0), cx + r, cy + r), fill=fill)
    elif kind == 1:
        draw.ellipse((cx - r, cy - r * 0.7, cx + r, cy + r * 0.7), fill=fill)
    elif kind == 2:
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    else:
        draw.polygon(star(cx, cy, r, rng.uniform(0, 2 * math.pi)), fill=fill)


def _draw_face(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    """A skin-coloured oval with two eyes and a mouth, 13-30 % of the poster's width."""
    fw = float(rng.uniform(0.13, 0.3) * w)
    fh = fw * 1.3
    x, y = float(rng.uniform(0, w - fw)), float(rng.uniform(0, h - fh))
    draw.ellipse((x, y, x + fw, y + fh), fill=SKIN[rng.integers(len(SKIN))])
    ey, er = y + 0.4 * fh, 0.08 * fw
    for ex in (x + 0.32 * fw, x + 0.68 * fw):
        draw.ellipse((ex - er * 1.4, ey - er, ex + er * 1.4, ey + er), fill=(250, 250, 250))
        draw.ellipse((ex - er * 0.7, ey - er * 0.7, ex + er * 0.7, ey + er * 0.7), fill=(40, 30, 20))
    draw.chord((x + 0.3 * fw, y + 0.62 * fh, x + 0.7 * fw, y + 0.82 * fh), 0, 180, fill=(150, 40, 50))


def _draw_text(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int, title: str, value: float) -> None:
    """The title in big letters at the top or bottom, a credit line and sometimes a tagline; outlined,
    so OCR can read them on any background."""
    ink, edge = ((245, 245, 245), (20, 20, 20)) if value < 0.55 else ((15, 15, 15), (235, 235, 235))
    style = {"fill": ink, "stroke_width": 1, "stroke_fill": edge}
    words = title.upper().split()
    lines = [" ".join(words)]
    if len(words) > 2 and _fit(lines[0], w) < w // 10:  # a long title takes two lines
        half = (len(words) + 1) // 2
        lines = [" ".join(words[:half]), " ".join(words[half:])]
    size = min(_fit(line, w) for line in lines)
    top = rng.random() < 0.5
    y = h * (0.04 if top else 0.92) - (0 if top else 1.1 * size * len(lines))
    draw.multiline_text((w / 2, y), "\n".join(lines), font=font(size), anchor="ma", align="center", **style)
    names = " ".join(str(NAMES[j]).upper() for j in rng.integers(len(NAMES), size=2))
    draw.text((w / 2, h * (0.92 if top else 0.03)), names, font=font(max(8, w // 18)), anchor="mt", **style)
    if rng.random() < 0.5:
        nouns = [str(NOUNS[j]) for j in rng.integers(len(NOUNS), size=2)]
        draw.text((w / 2, h * 0.5), f"Every {nouns[0]} has a {nouns[1]}", font=font(max(8, w // 16)), anchor="mm",
                  **style)


def _fit(text: str, w: int) -> int:
    """The largest font size (8 to w/8) at which ``text`` fills at most 92 % of the width."""
    size = max(10, w // 8)
    while size > 8 and font(size).getlength(text) > 0.92 * w:
        size -= 1
    return size
