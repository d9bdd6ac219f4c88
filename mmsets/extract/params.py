"""Extractor parameters: their dataclasses built from plain dicts, and the checks their ``__post_init__`` share."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping

from mmsets.listing import listed
from mmsets.plan.errors import ParamsError

DTYPES = ("float16", "float32")
# "random": the same architecture with seeded random weights, for rehearsals and tests of the papers' models
WEIGHTS = ("pretrained", "random")
# The setting of the extractors whose elements come from the data itself (a plot's lines, a poster's words): with
# no bound, one 120 KB plot of 20,000 lines made 20,000 elements and a set model 9 GB and 80 times slower.
MAX_ELEMENTS_KEY = "max_elements"


def params_from_dict(cls: type, params: Mapping[str, Any] | None, *, where: str = "params") -> Any:
    """Build the dataclass ``cls`` from ``params``, naming any unknown key or wrongly typed value."""
    params = dict(params or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ParamsError(f"{where}: unknown key(s) {unknown}; allowed: {listed(sorted(fields), limit=30)}")
    hints = typing.get_type_hints(cls)
    for key, value in params.items():
        if not _matches(value, hints[key]):
            raise ParamsError(f"{where}.{key}: {value!r} is not of type {_type_name(hints[key])}")
    return cls(**params)


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1] or (typing.Any,)
        return isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or hint)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_choice(where: str, value: Any, choices: typing.Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ParamsError(f"{where}: {value!r} is not one of {list(choices)}")


def check_names(where: str, names: list[Any], empty: str, item: str) -> None:
    """Refuse an empty list of names (``empty`` says what to give instead) and a repeated one."""
    if not names:
        raise ParamsError(f"{where}: {empty}")
    if len(set(names)) != len(names):
        raise ParamsError(f"{where}: {names} repeats a {item}")


def check_max_elements(where: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ParamsError(f"{where}.{MAX_ELEMENTS_KEY}: {value} is below 1")


def cut_to(elements: list, cap: int) -> tuple[list, bool]:
    """The first ``cap`` of ``elements``, and whether any were cut."""
    return elements[:cap], len(elements) > cap
