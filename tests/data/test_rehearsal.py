import collections

import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

from mmsets import cli
from mmsets.data import rehearsal
from mmsets.data.manifest import SPLITS, read_manifest
from mmsets.data.rehearsal import (
    CUE_WORDS, GENRE_COUNTS, N_GENRES_COUNTS, POSTER_SIZES, _assign_genres, _paragraph_lengths, generate_rehearsal,
    write_rehearsal,
)
from mmsets.data.mmimdb import GENRES

N = 60


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("rehearsal")
    generated = write_rehearsal(out / "images", out / "manifest.parquet", n_items=N, seed=3)
    return out, generated, read_manifest(out / "manifest.parquet")


def test_manifest_is_valid_and_round_trips(written):
    out, generated, m = written
    assert m.task == "multilabel" and m.dataset == "rehearsal" and m.label_names == list(GENRES)
    assert set(GENRE_COUNTS) == set(GENRES)
    assert len(m) == N and m.frame["id"].is_unique
    assert m.text_fields == ["title", "plot"]
    for column in ["id", "split", "image", "text_title", "text_plot", "labels"]:
        assert m.frame[column].tolist() == generated.frame[column].tolist()
    assert m.extra["n_items"] == N and m.extra["seed"] == 3 and m.extra["missing_image"] == 0.0


def test_splits_follow_mm_imdb(written):
    _, _, m = written
    counts = m.frame["split"].value_counts()
    assert set(counts.index) == set(SPLITS)
    total = 15552 + 2608 + 7799
    assert counts["train"] == round(N * 15552 / total) and counts["dev"] == round(N * 2608 / total)
    assert counts.sum() == N


def test_every_item_has_genres_of_the_23(written):
    _, _, m = written
    for labels in m.frame["labels"]:
        assert 1 <= len(labels) <= len(N_GENRES_COUNTS) and set(labels) <= set(GENRES)
        assert labels == [g for g in GENRES if g in labels]  # in label order, no repeats


def test_genre_frequencies_follow_the_table():
    n = 2000
    labels = _assign_genres(np.random.default_rng(0), n)
    counts = collections.Counter(g for item in labels for g in item)
    assert spearmanr([counts[g] for g in GENRES], [GENRE_COUNTS[g] for g in GENRES]).statistic > 0.9
    sample_items = sum(N_GENRES_COUNTS)
    for g in ("Drama", "Comedy", "Romance"):  # the common ones within 3 points of the sample's share
        assert abs(counts[g] / n - GENRE_COUNTS[g] / sample_items) < 0.03
    per_item = np.bincount([len(item) for item in labels], minlength=len(N_GENRES_COUNTS) + 1)[1:]
    assert per_item.sum() == n and min(len(item) for item in labels) >= 1
    assert np.abs(per_item / n - np.array(N_GENRES_COUNTS) / sample_items).max() < 0.03


def test_posters_decode_at_the_intended_size(written):
    out, _, m = written
    paths = m.frame["image"]
    assert paths.notna().all()  # missing_image defaults to 0: MM-IMDb has a poster for every item
    files = sorted((out / "images").rglob("*.jpeg"))
    assert sorted(map(str, files)) == sorted(paths)
    assert not list((out / "images").rglob(".*"))  # no temporary file left behind
    for p in paths:
        with Image.open(p) as im:
            im.load()
            assert im.format == "JPEG" and im.mode == "RGB" and im.size in POSTER_SIZES


def test_posters_go_to_folders_of_bounded_size(tmp_path, monkeypatch):
    monkeypatch.setattr(rehearsal, "FILES_PER_FOLDER", 25)
    m = generate_rehearsal(tmp_path, n_items=N, seed=1, missing_image=0.25, max_objects=0, max_faces=0)
    folders = sorted(p for p in tmp_path.iterdir())
    assert [p.name for p in folders] == ["000", "001", "002"]
    assert all(len(list(p.iterdir())) <= 25 for p in folders)
    assert m.frame["image"].isna().sum() == round(0.25 * N)
    assert len(list(tmp_path.rglob("*.jpeg"))) == N - round(0.25 * N)
    assert m.extra["objects_drawn"] == 0 and m.extra["faces_drawn"] == 0


def test_plots_have_mm_imdbs_shape(written):
    _, _, m = written
    plots = m.frame["text_plot"]
    for plot in plots:  # paragraphs one per line, as the MM-IMDb loader joins its list of summaries
        lines = plot.split("\n")
        assert all(line == line.strip() and line.endswith(".") and line[0].isupper() for line in lines)
    paragraphs = plots.str.count("\n") + 1
    assert paragraphs.max() >= 3 and 0.25 < (paragraphs > 1).mean() < 0.75
    titles = m.frame["text_title"].str.split().map(len)
    assert titles.between(1, 6).all()

    rng = np.random.default_rng(0)  # the distributions, on more plots than the fixture has
    lengths = [_paragraph_lengths(rng) for _ in range(2000)]
    assert 1.55 < np.mean([len(x) for x in lengths]) < 1.95  # the sample: 1.75 paragraphs per plot
    assert 95 < np.median([x.sum() for x in lengths]) < 140  # the sample: 117 words per plot


def test_plot_words_hint_at_the_genres(written):
    _, _, m = written
    cue_genre = {w: g for g, words in CUE_WORDS.items() for w in words.split()}
    own = other = 0
    for plot, labels in zip(m.frame["text_plot"], m.frame["labels"]):
        for word in plot.replace(",", " ").replace(".", " ").lower().split():
            if word in cue_genre:
                own, other = own + (cue_genre[word] in labels), other + (cue_genre[word] not in labels)
    assert own > 10 * max(other, 1)


def test_deterministic_for_a_seed(written, tmp_path):
    _, first, _ = written
    again = generate_rehearsal(tmp_path / "again", n_items=N, seed=3)
    for column in ["id", "split", "text_title", "text_plot", "labels"]:
        assert first.frame[column].tolist() == again.frame[column].tolist()
    for a, b in list(zip(first.frame["image"], again.frame["image"]))[:10]:
        assert open(a, "rb").read() == open(b, "rb").read()
    other = generate_rehearsal(tmp_path / "other", n_items=N, seed=4, max_objects=2, max_faces=2)
    assert other.frame["text_plot"].tolist() != first.frame["text_plot"].tolist()


def test_cli_prepares_a_rehearsal(tmp_path):
    out = tmp_path / "manifest.parquet"
    params = '{"kind": "rehearsal", "n_items": 20, "seed": 2, "splits": [2, 1, 1], "max_objects": 1, "max_faces": 1}'
    assert cli.main(["prepare", "rehearsal", "--images", str(tmp_path / "images"), "--out", str(out),
                     "--params", params]) == 0
    m = read_manifest(out)
    assert len(m) == 20 and m.frame["split"].value_counts()["train"] == 10
    assert m.extra["max_faces"] == 1
