import dataclasses

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmsets.data.manifest import Manifest, write_manifest
from mmsets.extract import ParamsError, make_params, run_extractor
from mmsets.extract import image as image_mod
from mmsets.extract.backbones import embed_images, load_image_backbone, to_rgb
from mmsets.extract.fingerprints import item_inputs
from mmsets.extract.image import ImageParams, extract_image
from mmsets.extract.item_loop import ImageSkip
from mmsets.extract.per_image import open_image
from mmsets.runtime import Runtime
from mmsets.store import RaggedStore, RaggedWriter

SIZE = 128
GOOD = ["cat.jpg", "coffee.png", "rgba.png", "cmyk.jpg", "gray.png"]
BAD = {"corrupt.jpg": "corrupt", "truncated.jpg": "corrupt", "bomb.png": "too_large", "missing.jpg": "missing_file"}
QUIET = Runtime(num_workers=0, progress=False)


def manifest_of(photos, names) -> Manifest:
    images = [None if n is None else str(photos[n]) for n in names]
    ids = [f"item{i}-{n}" for i, n in enumerate(names)]
    frame = pd.DataFrame({"id": ids, "split": "train", "image": images, "labels": [["drama"]] * len(ids)})
    return Manifest(frame, ["drama"], dataset="photos")


@pytest.fixture(scope="module")
def small_lite0():
    return load_image_backbone("efficientnet_lite0", "cpu", image_size=SIZE)


def test_bad_images_give_zero_elements_and_are_counted(photos, small_lite0, tmp_path):
    names = ["cat.jpg", "corrupt.jpg", None, "coffee.png", "truncated.jpg", "rgba.png", "bomb.png", "cmyk.jpg",
             "missing.jpg", "gray.png"]
    manifest = manifest_of(photos, names)
    write_manifest(manifest, tmp_path / "manifest.parquet")
    summary = run_extractor("image", tmp_path / "manifest.parquet", tmp_path / "image.h5",
                            {"model": "efficientnet_lite0", "image_size": SIZE},
                            {"device": "cpu", "batch_size": 3, "num_workers": 2, "progress": False})
    assert summary["items"] == len(names)
    assert summary["with_elements"] == summary["elements"] == len(GOOD)
    assert summary["skipped"] == {"corrupt": 2, "too_large": 1, "missing_file": 1, "no_image": 1}
    assert sorted(e["id"].split("-", 1)[1] for e in summary["errors"]) == sorted(BAD)
    assert summary["device"] == "cpu" and summary["items_per_s"] > 0

    with RaggedStore(tmp_path / "image.h5") as store:
        assert store.ids == list(manifest.frame["id"])
        assert [int(k) for k in store.counts()] == [int(n in GOOD) for n in names]
        assert store.attrs["model"] == "efficientnet_lite0" and store.params["image_size"] == SIZE
        assert store.summary == summary
        vectors = np.concatenate(store.get([i for i, n in zip(store.ids, names) if n in GOOD]))
    # Worker-decoded batches give what embedding the decoded photos directly gives.
    direct = embed_images(small_lite0, [Image.open(photos[n]) for n in GOOD])
    np.testing.assert_allclose(vectors.astype(np.float32), direct, rtol=2e-2, atol=2e-2)
    assert vectors.dtype == np.float16 and vectors.shape == (len(GOOD), 1280)


def test_open_image_reasons(photos, monkeypatch):
    assert open_image(photos["cmyk.jpg"]).mode == "RGB"
    assert open_image(photos["gray.png"]).mode == "RGB"
    for name, reason in BAD.items():
        with pytest.raises(ImageSkip) as err:
            open_image(photos[name])
        assert err.value.reason == reason and str(photos[name]) in err.value.detail
    for missing in (None, float("nan"), "", pd.NA):
        with pytest.raises(ImageSkip, match="no_image"):
            open_image(missing)
    with pytest.raises(ImageSkip, match="451x300 pixels is over 1000"):
        open_image(photos["cat.jpg"], max_pixels=1000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # PIL's own bomb limit, lowered
    with pytest.raises(ImageSkip) as err:
        open_image(photos["cat.jpg"])
    assert err.value.reason == "too_large"


def test_alpha_is_composited_on_white():
    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(clear).getpixel((0, 0)) == (255, 255, 255)
    half = Image.new("LA", (4, 4), (0, 128))
    assert to_rgb(half).getpixel((0, 0)) == pytest.approx((127, 127, 127), abs=1)
    palette = Image.new("P", (2, 2), 0)
    palette.info["transparency"] = 0
    assert to_rgb(palette).getpixel((0, 0)) == (255, 255, 255)


def test_resume_skips_committed_items(photos, small_lite0, tmp_path, monkeypatch):
    """A partial store with three items done (one without image): only the rest reach the model."""
    names = ["cat.jpg", None, "coffee.png", "gray.png", "cmyk.jpg", "corrupt.jpg", "rgba.png"]
    manifest = manifest_of(photos, names)
    manifest.frame.loc[1, "image"] = float("nan")  # pandas' missing value counts as no image too
    params = make_params("image", {"image_size": SIZE})
    out = tmp_path / "image.h5"
    sentinel = np.full((1, 1280), 7.0, np.float32)
    writer = RaggedWriter(out, extractor="image", dim=1280, dtype="float16", model=params.model,
                          params=dataclasses.asdict(params), inputs=item_inputs(manifest, "image", params))
    writer.add(manifest.frame["id"][0], sentinel)
    writer.add(manifest.frame["id"][1], np.zeros((0, 1280)))
    writer.add(manifest.frame["id"][2], sentinel)
    writer.abort()

    seen = []
    counting = dataclasses.replace(small_lite0)
    counting.features = lambda x: (seen.append(len(x)), small_lite0.features(x))[1]
    monkeypatch.setattr(image_mod, "load_image_backbone", lambda *a, **k: counting)
    summary = extract_image(manifest, out, params, QUIET.replace(device="cpu", batch_size=2))

    assert sum(seen) == 3  # gray, cmyk, rgba; corrupt never reaches the model
    assert summary["resumed"] == 3 and summary["items"] == len(names)
    assert summary["skipped"] == {"no_image": 1, "corrupt": 1}
    with RaggedStore(out) as store:
        assert store.ids == list(manifest.frame["id"])
        assert [int(k) for k in store.counts()] == [1, 0, 1, 1, 1, 0, 1]
        first, _, third, fourth = store.get(store.ids[:4])
        assert (first == 7).all() and (third == 7).all() and not (fourth == 7).all()


def test_changed_params_start_over(photos, small_lite0, tmp_path, monkeypatch):
    manifest = manifest_of(photos, ["cat.jpg"])
    writer = RaggedWriter(tmp_path / "image.h5", extractor="image", dim=1280, model="efficientnet_lite0",
                          params=dataclasses.asdict(ImageParams(image_size=SIZE * 2)))
    writer.add(manifest.frame["id"][0], np.full((1, 1280), 7.0))
    writer.abort()
    monkeypatch.setattr(image_mod, "load_image_backbone", lambda *a, **k: small_lite0)
    summary = extract_image(manifest, tmp_path / "image.h5", ImageParams(image_size=SIZE), QUIET)
    assert summary["resumed"] == 0
    with RaggedStore(tmp_path / "image.h5") as store:
        assert not (store.get(store.ids)[0] == 7).all()


def test_interrupted_run_leaves_only_a_partial_file(photos, small_lite0, tmp_path, monkeypatch):
    manifest = manifest_of(photos, GOOD)
    broken = dataclasses.replace(small_lite0)
    calls = []

    def fail_second_batch(x):
        calls.append(len(x))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return small_lite0.features(x)

    broken.features = fail_second_batch
    monkeypatch.setattr(image_mod, "load_image_backbone", lambda *a, **k: broken)
    with pytest.raises(KeyboardInterrupt):
        extract_image(manifest, tmp_path / "image.h5", ImageParams(image_size=SIZE), QUIET.replace(batch_size=2))
    assert not (tmp_path / "image.h5").exists() and (tmp_path / "image.h5.partial").exists()
    monkeypatch.setattr(image_mod, "load_image_backbone", lambda *a, **k: small_lite0)
    summary = extract_image(manifest, tmp_path / "image.h5", ImageParams(image_size=SIZE), QUIET)
    assert summary["resumed"] == 2 and summary["elements"] == len(GOOD)


def test_params_from_dict_names_the_bad_key():
    assert make_params("image", {}) == ImageParams()
    assert make_params("image", {"image_size": None}).image_size is None
    with pytest.raises(ParamsError, match=r"unknown key\(s\) \['img_size'\]"):
        make_params("image", {"img_size": 128})
    with pytest.raises(ParamsError, match="image_size: '128' is not of type"):
        make_params("image", {"image_size": "128"})
    with pytest.raises(ParamsError, match="dtype: 'float64' is not one of"):
        make_params("image", {"dtype": "float64"})
    with pytest.raises(ParamsError, match="image_size: 0"):
        make_params("image", {"image_size": 0})


def test_run_extractor_rejects_unknown_names(tmp_path):
    with pytest.raises(ParamsError, match="extractor 'faces2' is unknown"):
        run_extractor("faces2", tmp_path / "m.parquet", tmp_path / "x.h5", {}, {})
    with pytest.raises(ParamsError, match=r"image runtime: unknown key\(s\) \['workers'\]"):
        run_extractor("image", tmp_path / "m.parquet", tmp_path / "x.h5", {}, {"workers": 2})


def test_random_weights_rehearse_the_paper_cnn(photos, random_wsl, loader, twice, tmp_path, monkeypatch):
    """weights: random builds ResNeXt-101 32x16d WSL without a download: its 2048-d vectors, the same on every run."""
    load = loader(random_wsl)
    monkeypatch.setattr(image_mod, "load_image_backbone", load)
    write_manifest(manifest_of(photos, ["cat.jpg", "coffee.png", None]), tmp_path / "manifest.parquet")
    params = {"model": "resnext101_32x16d_wsl", "image_size": 64, "weights": "random"}  # random_wsl's size
    summary, path = twice("image", tmp_path / "manifest.parquet", tmp_path, params)
    assert load.calls == [("resnext101_32x16d_wsl", {"image_size": 64, "pretrained": False})] * 2
    assert summary["elements"] == 2 and summary["skipped"] == {"no_image": 1}
    with RaggedStore(path) as store:
        assert store.dim == 2048 and store.attrs["model"] == "resnext101_32x16d_wsl"
        assert store.params["weights"] == "random"
        cat, coffee, _ = (v.astype(np.float32) for v in store.get(store.ids))
    assert np.isfinite(cat).all() and np.abs(cat - coffee).max() > 0  # a network, if an untrained one


def test_weights_are_a_choice():
    assert ImageParams().weights == "pretrained"
    with pytest.raises(ParamsError, match=r"image params.weights: 'imagenet' is not one of \['pretrained', 'random'\]"):
        make_params("image", {"weights": "imagenet"})


def test_every_image_path_wrong_is_an_error_naming_them(tmp_path, monkeypatch):
    from mmsets.data.demo import write_demo
    from mmsets.data.manifest import read_manifest

    monkeypatch.chdir(tmp_path)
    write_demo("data", "manifest.parquet", n_items=12)  # a relative folder, as the workflow gives it
    manifest = read_manifest("manifest.parquet")
    images = [p for p in manifest.frame["image"] if p is not None]
    assert images and all(p.startswith(str(tmp_path)) for p in images)  # resolved at prepare time

    moved = manifest.frame.copy()
    moved["image"] = [None if p is None else "elsewhere/" + p.rsplit("/", 1)[1] for p in moved["image"]]
    write_manifest(Manifest(moved, manifest.label_names), "moved.parquet")
    with pytest.raises(RuntimeError, match="none of the manifest's .* image paths is a file .*elsewhere/demo-"):
        run_extractor("image", "moved.parquet", "image.h5", {"model": "efficientnet_lite0"}, QUIET)
    assert not (tmp_path / "image.h5").exists()


def test_a_partial_store_of_changed_images_starts_over(photos, small_lite0, tmp_path, monkeypatch):
    """The stale-partial case: same ids, same settings, but an image file was replaced since."""
    import shutil

    work = tmp_path / "images"
    work.mkdir()
    names = ["cat.jpg", "coffee.png", "gray.png"]
    for name in names:
        shutil.copy(photos[name], work / name)
    manifest = manifest_of({n: work / n for n in names}, names)
    params = make_params("image", {"image_size": SIZE})
    out = tmp_path / "image.h5"
    writer = RaggedWriter(out, extractor="image", dim=1280, dtype="float16", model=params.model,
                          params=dataclasses.asdict(params), inputs=item_inputs(manifest, "image", params))
    for item_id in manifest.frame["id"][:2]:
        writer.add(item_id, np.full((1, 1280), 7.0))
    writer.abort()
    Image.open(photos["rgba.png"]).convert("RGB").save(work / "coffee.png")  # a new poster, same path

    monkeypatch.setattr(image_mod, "load_image_backbone", lambda *a, **k: small_lite0)
    summary = extract_image(manifest, out, params, QUIET.replace(device="cpu"))
    assert summary["resumed"] == 0 and "first 'item1-coffee.png'" in summary["restarted"]
    with RaggedStore(out) as store:
        assert not any((x == 7).all() for x in store.get(store.ids))


def test_a_folder_given_as_image_is_named_as_such(tmp_path):
    with pytest.raises(ImageSkip) as skip:
        open_image(str(tmp_path))
    assert skip.value.reason == "not_a_file" and "is a folder" in str(skip.value)


def test_the_pixel_cap_is_a_runtime_setting(photos, small_lite0, tmp_path, monkeypatch):
    monkeypatch.setenv("MMSETS_MAX_PIXELS", "5000")
    runtime = Runtime.from_env(num_workers=0, progress=False, device="cpu")
    assert runtime.max_pixels == 5000
    monkeypatch.setattr(image_mod, "load_image_backbone", lambda *a, **k: small_lite0)
    summary = extract_image(manifest_of(photos, ["cat.jpg"]), tmp_path / "i.h5", make_params("image", {}), runtime)
    assert summary["skipped"] == {"too_large": 1} and "is over 5000" in summary["errors"][0]["detail"]
