"""Feature extractors: manifest -> one ragged HDF5 store per extractor (docs/formats.md, mmsets.store)."""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import TYPE_CHECKING, Any, Mapping

from mmsets.plan.errors import ParamsError
from mmsets.plan.extractors import EXTRACTORS, extractor
from mmsets.runtime import Runtime

if TYPE_CHECKING:  # naming extractors loads no pandas
    from mmsets.data.manifest import Manifest

__all__ = ["EXTRACTORS", "ParamsError", "Runtime", "as_manifest", "make_params", "run_extractor"]


def run_extractor(
    name: str,
    manifest: Manifest | str | os.PathLike,
    out_path: str | os.PathLike,
    params: Mapping[str, Any] | None = None,
    runtime: Runtime | Mapping[str, Any] | None = None,
    shard: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Run extractor ``name`` over a manifest (a Manifest, or its file) and return its store summary.

    ``params`` change the output (they are recorded in the store, and a resume needs the same);
    ``runtime`` only changes how it is computed: a Runtime, or a mapping of its fields. ``shard`` (i, K)
    extracts the i-th of K blocks of the manifest's items only (``mmsets.extract.shards``). The store's lock
    is taken first, so a second extraction into the same store fails before it loads a model.
    """
    from mmsets.extract.shards import shard_manifest
    from mmsets.store import store_lock

    config = make_params(name, params)
    runtime = as_runtime(runtime, where=f"{name} runtime")
    manifest = as_manifest(manifest)
    if shard is not None:
        extractor(name).check_shardable()
        manifest = shard_manifest(manifest, *shard)
    extract = getattr(importlib.import_module(extractor(name).module), extractor(name).function)
    with store_lock(out_path):
        return extract(manifest, out_path, config, runtime)


def as_manifest(manifest: Manifest | str | os.PathLike) -> Manifest:
    """``manifest`` itself, or the manifest read from the file it names."""
    if isinstance(manifest, (str, os.PathLike)):
        from mmsets.data.manifest import read_manifest

        return read_manifest(manifest)
    return manifest


def make_params(name: str, params: Mapping[str, Any] | None = None) -> Any:
    """Extractor ``name``'s params dataclass from ``params``; a ParamsError names an unknown key or a wrong value."""
    from mmsets.extract.params import params_from_dict

    entry = extractor(name)
    return params_from_dict(getattr(importlib.import_module(entry.module), entry.params), params,
                            where=f"{name} params")


def as_runtime(runtime: Runtime | Mapping[str, Any] | None, *, where: str = "runtime") -> Runtime:
    """``runtime`` as a Runtime; a mapping with a key Runtime does not have is a ParamsError naming it."""
    if isinstance(runtime, Runtime):
        return runtime
    runtime = dict(runtime or {})
    allowed = [f.name for f in dataclasses.fields(Runtime)]
    unknown = sorted(set(runtime) - set(allowed))
    if unknown:
        raise ParamsError(f"{where}: unknown key(s) {unknown}; allowed: {allowed}")
    return Runtime(**runtime)
