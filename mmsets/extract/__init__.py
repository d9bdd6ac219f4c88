"""Feature extractors: manifest -> one ragged HDF5 store per extractor (see mmsets.store)."""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Any, Mapping

from mmsets.extract.registry import EXTRACTORS, ParamsError, check_extractor

__all__ = ["EXTRACTORS", "ParamsError", "run_extractor"]

SHARED_RUNTIME = ("device", "batch_size", "num_workers", "threads")


def run_extractor(
    name: str,
    manifest_path: str | os.PathLike,
    out_path: str | os.PathLike,
    params: Mapping[str, Any] | None = None,
    runtime: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run extractor ``name`` over a manifest file and return its store summary.

    ``params`` change the output (they are recorded in the store, and a resume needs the same);
    ``runtime`` only changes how it is computed: device, batch_size, num_workers, progress, ...
    """
    from mmsets.data.manifest import read_manifest

    check_extractor(name)
    module_name, fn_name, params_name = EXTRACTORS[name]
    module = importlib.import_module(module_name)
    extract, params_cls = getattr(module, fn_name), getattr(module, params_name)
    config = params_cls.from_dict(params)
    runtime = dict(runtime or {})
    allowed = [p for p in inspect.signature(extract).parameters if p not in ("manifest", "out_path", "params")]
    # The workflow passes the same runtime settings to every extractor; those it has no use for are dropped.
    runtime = {k: v for k, v in runtime.items() if k in allowed or k not in SHARED_RUNTIME}
    unknown = sorted(set(runtime) - set(allowed))
    if unknown:
        raise ParamsError(f"{name} runtime: unknown key(s) {unknown}; allowed: {allowed}")
    manifest = read_manifest(manifest_path)
    return extract(manifest, out_path, config, **runtime)
