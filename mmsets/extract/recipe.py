"""What made a store: its extractor and settings, and those of every store it read, so that new items can be
extracted the same way (``mmsets predict``).

A recipe is ``{store name: {"extractor": ..., "params": {...}, "reads": {param key: store name}}}``: the params
as the store records them, with the paths of the stores it read (at the dotted ``reads`` keys) left out. A
store that the user's own code wrote (its name is no extractor's) is recorded with ``"external": true``: a run
trained on it still loads, but new items cannot be extracted for it.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from mmsets.plan.dotted import get_dotted, set_dotted
from mmsets.plan.errors import ParamsError
from mmsets.plan.extractors import MANIFEST_FIELD_KINDS, extractor
from mmsets.plan.layout import store_name, store_path

if TYPE_CHECKING:  # reading a recipe loads no pandas
    from mmsets.data.manifest import Manifest


def store_recipe(stores: Mapping[str, str | os.PathLike]) -> dict[str, dict]:
    """The recipe of the stores ``{name: path}`` and of every store they read, from the stores' own records.

    A store read by another is looked for at the path recorded, else beside the store that read it.
    """
    from mmsets.store import RaggedStore

    recipe: dict[str, dict] = {}
    todo = [(name, Path(path)) for name, path in stores.items()]
    while todo:
        name, path = todo.pop()
        if name in recipe:
            continue
        with RaggedStore(path) as store:
            params = store.params
            try:
                entry = extractor(name)
            except ParamsError:  # written by the user's own code: nothing to re-run
                recipe[name] = {"extractor": str(store.attrs.get("extractor", "")), "params": params, "reads": {},
                                "external": True}
                continue
            params = entry.carried_params(store.attrs, params)
        reads = {}
        for key in entry.upstream_of(params):
            recorded = get_dotted(params, key)
            if recorded is None:
                continue
            upstream = store_name(recorded)
            found = Path(recorded)
            if not found.is_file():
                found = path.with_name(Path(recorded).name)
            reads[key] = upstream
            set_dotted(params, key, None)
            todo.append((upstream, found))
        recipe[name] = {"extractor": entry.name, "params": params, "reads": reads}
    return recipe


def recipe_order(recipe: Mapping[str, dict]) -> list[str]:
    """The recipe's stores, each after the stores it reads."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in path:
            raise ValueError(f"store recipe: {name!r} reads itself through {list(path)}")
        if name not in recipe:
            raise ValueError(f"store recipe: {path[-1]!r} reads {name!r}, which the recipe lacks")
        for upstream in recipe[name]["reads"].values():
            visit(upstream, (*path, name))
        order.append(name)

    for name in recipe:
        visit(name, ())
    return order


def recipe_params(recipe: Mapping[str, dict], name: str, features_dir: str | os.PathLike) -> dict:
    """Store ``name``'s params with the stores it reads filled in from ``features_dir``."""
    entry = recipe[name]
    params = copy.deepcopy(entry["params"])
    for key, upstream in entry["reads"].items():
        set_dotted(params, key, store_path(features_dir, upstream))
    return params


def recipe_inputs(recipe: Mapping[str, dict]) -> dict[str, list[str]]:
    """The manifest's text and categorical fields that a recipe's extractors read: ``{"text": [...],
    "categorical": [...]}``, each in the order the recipe's stores first name them."""
    found: dict[str, list[str]] = {kind: [] for kind in MANIFEST_FIELD_KINDS}
    for entry in recipe.values():
        if entry.get("external"):
            continue
        for kind, names in extractor(entry["extractor"]).fields_read(entry["params"]).items():
            found[kind] += names
    return {kind: list(dict.fromkeys(names)) for kind, names in found.items()}


def run_recipe(recipe: Mapping[str, dict], manifest: Manifest | str | os.PathLike, features_dir: str | os.PathLike,
               runtime: Any = None) -> dict[str, dict]:
    """Extract every store of ``recipe`` for the items of ``manifest`` (a Manifest, or its file) into
    ``features_dir``; return the summaries by store name."""
    from mmsets.extract import as_manifest, run_extractor
    from mmsets.extract.weights import check_weights

    check_weights([entry.get("params") or {} for entry in recipe.values()], "extracting the run's stores")
    manifest = as_manifest(manifest)  # read once for every store

    external = [name for name in recipe if recipe[name].get("external")]
    if external:
        raise ValueError(f"store(s) {external} were not written by an mmsets extractor (recorded extractor: "
                         f"{[recipe[n]['extractor'] for n in external]}), so new items cannot be extracted "
                         f"for them the same way")
    return {name: run_extractor(name, manifest, store_path(features_dir, name),
                                recipe_params(recipe, name, features_dir), runtime)
            for name in recipe_order(recipe)}
