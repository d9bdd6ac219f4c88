import pandas as pd
import pytest
from PIL import Image

from mmsets.data.demo import CUES, GENRES, generate_demo, write_demo
from mmsets.data.manifest import SPLITS, read_manifest

N = 120


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, generate_demo(out, n_items=N, seed=3, image_size=64)


def test_deterministic_for_a_seed(demo, tmp_path):
    out, first = demo
    again = generate_demo(tmp_path, n_items=N, seed=3, image_size=64)
    a, b = first.frame, again.frame
    assert a["id"].tolist() == b["id"].tolist()
    assert a["labels"].tolist() == b["labels"].tolist()
    assert a["text_plot"].tolist() == b["text_plot"].tolist()
    assert a["split"].tolist() == b["split"].tolist()
    both = [i for i, (x, y) in enumerate(zip(a["image"], b["image"])) if x and y][:5]
    assert both
    for i in both:
        assert open(a["image"][i], "rb").read() == open(b["image"][i], "rb").read()
    other = generate_demo(tmp_path / "other", n_items=N, seed=4, image_size=64)
    assert other.frame["labels"].tolist() != a["labels"].tolist()


def test_missing_modalities_match_rates(demo):
    _, m = demo
    no_image, no_text = m.frame["image"].isna(), m.frame["text_plot"].isna()
    assert no_image.sum() == round(0.1 * N) and no_text.sum() == round(0.1 * N)
    assert not (no_image & no_text).any()  # every item keeps at least one modality
    assert m.frame["text_title"].notna().all()


def test_images_open_with_right_size(demo):
    out, m = demo
    paths = m.frame["image"].dropna()
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(f"{i}.png" for i in m.frame.loc[paths.index, "id"])
    for p in paths:
        with Image.open(p) as im:
            im.load()
            assert im.size == (64, 64) and im.mode == "RGB"


def test_labels_and_splits(demo):
    _, m = demo
    assert m.task == "multilabel" and m.dataset == "demo" and m.label_names == list(GENRES)
    assert set(CUES) == set(GENRES)
    for labels in m.frame["labels"]:
        assert 1 <= len(labels) <= 3 and set(labels) <= set(GENRES)
    assert {g for labels in m.frame["labels"] for g in labels} == set(GENRES)
    counts = m.frame["split"].value_counts()
    assert set(counts.index) == set(SPLITS) and counts.sum() == N
    assert counts["train"] == round(0.6 * N) and counts["dev"] == round(0.15 * N)
    assert m.frame["id"].is_unique


def test_plots_carry_text_cues_only_for_text_genres(demo):
    _, m = demo
    plots = m.frame["text_plot"].dropna()
    assert plots.str.len().between(20, 600).all()
    crime = m.frame.loc[plots.index, "labels"].map(lambda l: "crime" in l)
    words = plots.str.contains("detective|murder|heist|police|killer|mob boss|mafia|framed")
    assert (words & crime).sum() > (words & ~crime).sum()


def test_split_fractions_and_seed_move_items_between_splits_and_change_nothing_else(demo, tmp_path):
    _, m = demo
    other = generate_demo(tmp_path, n_items=N, seed=3, image_size=64, split_fractions=(0.5, 0.25, 0.25), split_seed=9)
    assert other.frame["labels"].tolist() == m.frame["labels"].tolist()
    assert other.frame["text_plot"].tolist() == m.frame["text_plot"].tolist()
    assert other.frame["split"].value_counts().to_dict() == {"train": 60, "dev": 30, "test": 30}
    for genre in GENRES:  # stratified by genre: each one's items split about as the items are
        members = other.frame["split"][[genre in labels for labels in other.frame["labels"]]]
        assert abs((members == "train").mean() - 0.5) <= 0.1, genre


def test_write_demo_round_trips(tmp_path):
    path = tmp_path / "manifest.parquet"
    written = write_demo(tmp_path / "demo", path, n_items=20, seed=1, image_size=48)
    back = read_manifest(path)
    assert back.label_names == written.label_names and back.task == "multilabel" and back.dataset == "demo"
    assert back.extra["cues"] == CUES
    for col in ["id", "split", "image", "text_title", "text_plot", "labels"]:
        norm = lambda s: [None if not isinstance(v, list) and pd.isna(v) else v for v in s]  # noqa: E731
        assert norm(back.frame[col]) == norm(written.frame[col]), col
    assert not list(tmp_path.glob(".*tmp*")) and not list((tmp_path / "demo" / "images").glob(".*tmp*"))
