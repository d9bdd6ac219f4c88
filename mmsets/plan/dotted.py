"""Nested settings addressed by dotted keys (``"stores.ocr"``): how the registries name a store path inside an
extractor's params."""

from __future__ import annotations

from typing import Any, Mapping


def get_dotted(params: Mapping[str, Any], key: str) -> Any:
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def set_dotted(params: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = params
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
