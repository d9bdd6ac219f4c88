"""Score new items with a trained run, from Python or ``mmsets predict``::

    from mmsets import load_run

    run = load_run("results/mmimdb/runs/dmms-image_text-max-s0")
    frame = run.predict([{"id": "tt01", "image": "posters/tt01.jpg", "plot": "A detective ...", "title": "..."}])
    frame = run.predict(items_dataframe, work_dir="scratch/")   # keeps the manifest and the stores there

The new items are extracted exactly as the run's training items were: each store the run reads (and each
store those read) is made again with the extractor and settings it records (``config.stores`` of
``model.pt``). Items are given with an ``id`` (else numbered), an ``image`` path (or none) and the run's
text and categorical fields by name (``plot`` or ``text_plot``), or as the path of a CSV / JSON Lines table or
an MM-IMDb-layout folder (``run.predict("items.csv")``, as ``mmsets predict --items``). The result has one row
per item: the outputs (a probability per label, or the value), the labels the run's decision rule gives, and each
modality's share of the prediction (``share_<modality>``) when the model family explains items. ``explain`` after
``predict`` of the same items (the same ids, fields and image files) reuses its result: nothing is extracted again
(unless another ``work_dir`` asks for the stores there).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np
import pandas as pd

from mmsets.data.manifest import CAT_PREFIX, TEXT_PREFIX, Manifest, is_missing, write_manifest
from mmsets.extract.recipe import recipe_inputs, run_recipe, store_recipe
from mmsets.listing import listed
from mmsets.plan.extractors import extractor
from mmsets.plan.layout import MODEL, store_path

if TYPE_CHECKING:
    from mmsets.runs.scoring import EnsembleModels, Prediction, RunModels

log = logging.getLogger(__name__)

SHARE_PREFIX = "share_"
MISSING = "missing"  # per item, the inputs it has no element in (its image missing or unreadable: ["image"])
PREDICTED = "predicted"  # the labels the decision gives (multi-label: a list; single-label: the class)


class PredictError(ValueError):
    pass


@dataclass(repr=False)
class TrainedRun:
    """A run directory loaded for prediction: its models (a k-fold run: one per fold) and its config."""

    path: Path
    config: dict
    models: RunModels | EnsembleModels
    extraction: dict = field(default_factory=dict)  # the last predict's store summaries
    # the last predict: the items' digest, its work_dir (None: a temporary one) and its result
    last: tuple[str, str | None, pd.DataFrame] | None = None

    def __repr__(self) -> str:
        task = (self.config.get("task") or {}).get("name", "multilabel")
        return (f"TrainedRun({self.path.name!r}, model={self.config.get('model')!r}, task={task!r}, "
                f"labels={len(self.config.get('label_names') or [])}, features={self.features})")

    @property
    def label_names(self) -> list[str]:
        return list(self.config["label_names"])

    @property
    def features(self) -> list[str]:
        return list(self.config["features"])

    @property
    def recipe(self) -> dict:
        return self.config["stores"]

    def _with_item_columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The items with the id and image columns of the table the run was trained on (``poster``) read as
        ``id`` and ``image``, where the items have no column of that name."""
        columns = self.config.get("item_columns") or {}
        renamed = {own: name for name, own in columns.items()
                   if own and own != name and own in frame.columns and name not in frame.columns}
        return frame.rename(columns=renamed)

    def items_manifest(self, items: pd.DataFrame | Iterable[Mapping[str, Any]],
                       image_root: str | os.PathLike | None = None) -> Manifest:
        """New items as a manifest of split "test" without labels; relative image paths against ``image_root``
        (default: the current folder). A field the run reads must be a column, even an empty one."""
        frame = items.copy() if isinstance(items, pd.DataFrame) else pd.DataFrame(list(items))
        if frame.empty:
            raise PredictError("no items to predict")
        frame = self._with_item_columns(frame)
        inputs = recipe_inputs(self.recipe)
        refuse_control_characters(frame, ["id", "image", *(c for name in inputs["categorical"]
                                                           for c in (name, CAT_PREFIX + name))])
        out = pd.DataFrame(index=frame.index)
        if "id" in frame.columns:
            ids = [None if is_missing(v) else str(v).strip() for v in frame["id"]]
            empty = [k for k, v in enumerate(ids) if v is None]
            if empty:
                raise PredictError(f"item {empty[0]}: empty id")
            out["id"] = ids
        else:
            out["id"] = [f"item-{k + 1}" for k in range(len(frame))]
        out["split"] = "test"
        root = Path(image_root) if image_root is not None else Path.cwd()
        images = frame["image"] if "image" in frame.columns else pd.Series(None, index=frame.index, dtype=object)
        out["image"] = [None if is_missing(p) else str((root / str(p).strip()).absolute()) for p in images]
        missing = []
        for prefix, names in ((TEXT_PREFIX, inputs["text"]), (CAT_PREFIX, inputs["categorical"])):
            for name in names:
                column = next((c for c in (name, prefix + name) if c in frame.columns), None)
                if column is None:
                    missing.append(name)
                    continue
                out[prefix + name] = [None if is_missing(v) else cleaned(str(v), prefix) for v in frame[column]]
        if missing:
            raise PredictError(f"the items lack the field(s) {missing} that run {self.path.name} was trained on "
                               f"(columns named so, or {TEXT_PREFIX}<name> / {CAT_PREFIX}<name>; "
                               f"give an empty column for a field the items do not have)")
        out["labels"] = [[] for _ in range(len(out))]
        task = self.config.get("task") or {"name": "multilabel"}
        if task["name"] == "regression":
            out["target"] = np.nan
        return Manifest(out.astype(object).where(out.notna(), None).reset_index(drop=True), self.label_names,
                        task["name"], self.config.get("dataset", ""), {"source": "predict", "image_root": str(root)})

    def predict(self, items: pd.DataFrame | Iterable[Mapping[str, Any]] | Manifest | str | os.PathLike,
                work_dir: str | os.PathLike | None = None, runtime: Any = None, device: str = "auto",
                image_root: str | os.PathLike | None = None) -> pd.DataFrame:
        """Extract ``items`` as the run's training items were, score and explain them (see the module doc).

        ``items`` may be a path (a table or an MM-IMDb-layout folder, ``read_items``): its relative image paths
        are then taken from its folder unless ``image_root`` says otherwise. ``work_dir`` keeps the manifest and
        stores (a rerun resumes an interrupted extraction); without it the stores go to a temporary folder.
        ``extraction`` then holds each store's summary (skips counted).
        """
        if isinstance(items, (str, os.PathLike)):
            items, found_root = read_items(items)
            image_root = found_root if image_root is None else image_root
        manifest = items if isinstance(items, Manifest) else self.items_manifest(items, image_root)
        key = items_digest(manifest)
        work = None if work_dir is None else os.path.abspath(work_dir)
        if self.last is not None and self.last[0] == key and work in (None, self.last[1]):  # else: stores asked for
            return self.last[2].copy()
        self._check_images(manifest)
        if work_dir is None:
            with tempfile.TemporaryDirectory(prefix="mmsets-predict-") as tmp:
                frame = self._predict(manifest, Path(tmp), runtime, device)
        else:
            Path(work).mkdir(parents=True, exist_ok=True)
            write_manifest(manifest, Path(work) / "manifest.parquet")
            frame = self._predict(manifest, Path(work), runtime, device)
        self.last = (key, work, frame.copy())
        return frame

    def _check_images(self, manifest: Manifest) -> None:
        """When the run reads images and not one of the items' images is a file, the paths are wrong: say so,
        by item, before extracting a store of items without images."""
        if not any(not e.get("external") and extractor(e["extractor"]).reads_image for e in self.recipe.values()):
            return
        given = [(i, p) for i, p in zip(manifest.frame["id"], manifest.frame["image"]) if not is_missing(p)]
        if not given or any(os.path.isfile(p) for _, p in given):
            return
        shown = listed((f"item {i!r}: {str(p)!r}" for i, p in given), limit=3, quote=False, width=200)
        root = manifest.extra.get("image_root")
        where = f"; relative image paths are taken from {root!r} (image_root)" if root else ""
        raise PredictError(f"no image of the {len(given)} item(s) given is a file ({shown}){where}: run "
                           f"{self.path.name} reads images; give the items' image paths as they are on this machine")

    def _predict(self, manifest: Manifest, work: Path, runtime: Any, device: str) -> pd.DataFrame:
        from mmsets.runs.scoring import open_stores, predict_items

        self.extraction = run_recipe(self.recipe, manifest, work / "features", runtime)
        with open_stores({name: store_path(work / "features", name) for name in self.features}) as stores:
            frame = self._frame(predict_items(self.models.to(device), manifest, stores))
            frame[MISSING] = [missing_inputs(stores, item_id) for item_id in frame["id"]]
            return frame

    def _frame(self, scored: Prediction) -> pd.DataFrame:
        frame = pd.DataFrame({"id": scored.ids})
        task, outputs = scored.task, scored.outputs
        if task.name == "regression":
            frame["prediction"] = np.asarray(outputs, np.float64)
        else:
            names = task.output_names
            for j, name in enumerate(names):
                frame[name] = np.asarray(outputs[:, j], np.float64)
            chosen = scored.decision.apply(outputs)
            if task.name == "multilabel":
                frame[PREDICTED] = [[n for n, on in zip(names, row) if on] for row in chosen]
            else:
                frame[PREDICTED] = [names[k] for k in chosen]
        if scored.shares is not None:
            for j, name in enumerate(scored.modalities):
                frame[SHARE_PREFIX + name] = scored.shares[:, j].astype(np.float64)
        frame.attrs.update(run=self.path.name, explain_kind=scored.kind)
        return frame

    def explain(self, items: Any, **kwargs: Any) -> pd.DataFrame:
        """Each item's modality shares alone (``predict``'s ``share_`` columns, without the ``share_``)."""
        frame = self.predict(items, **kwargs)
        shares = [c for c in frame.columns if c.startswith(SHARE_PREFIX)]
        if not shares:
            raise PredictError(f"run {self.path.name}: its model ({self.config['model']}) gives no per-item shares")
        return frame[["id", *shares]].rename(columns=lambda c: c.removeprefix(SHARE_PREFIX))


def refuse_control_characters(frame: pd.DataFrame, columns: list[str]) -> None:
    """A control character in ``columns`` (the id, image path and categorical values) is refused as ``mmsets
    prepare`` refuses it (a NUL id later fails every extractor naming nothing); text fields are ``cleaned``."""
    from mmsets.data.table import refuse_controls

    rows = [f"line {n}" for n in frame["line"]] if "line" in frame.columns else \
        [f"item {n}" for n in range(1, len(frame) + 1)]
    for column in [c for c in columns if c in frame.columns]:
        for row, value in zip(rows, frame[column]):
            refuse_controls(value, f"{row}: column {column!r}")


def cleaned(value: str, prefix: str) -> str:
    """A text field without the control characters ``mmsets prepare`` removes from text (tab, newline and return
    stay), so new items read as the training items were."""
    from mmsets.data.table import TEXT_CONTROL

    return TEXT_CONTROL.sub("", value) if prefix == TEXT_PREFIX else value


def missing_inputs(stores: Mapping[str, Any], item_id: str) -> list[str]:
    """The run's inputs ``item_id`` has no element in: a store's name, or a token store's modality."""
    from mmsets.store import store_modalities

    missing = []
    for name, store in stores.items():
        elements = store.rows(item_id)
        modalities = store_modalities(store)
        if modalities is None or "modality" not in store.fields:
            missing += [name] if elements.stop == elements.start else []
            continue
        present = set(int(m) for m in store.get([item_id], "modality")[0])
        missing += [m for k, m in enumerate(modalities) if k not in present]
    return missing


def read_items(path: str | os.PathLike) -> tuple[pd.DataFrame, Path]:
    """New items from a CSV / JSON Lines table or a folder in MM-IMDb's layout, and the folder their relative
    image paths are taken from (the table's folder)."""
    path = Path(path)
    if path.is_dir():
        from mmsets.data.mmimdb import load_mmimdb

        manifest = load_mmimdb(path, labelled=False)
        if not len(manifest):
            raise PredictError(f"{path}: no readable item in its dataset/ folder ({manifest.extra['skipped']})")
        return manifest.frame.drop(columns=["split", "labels"]), path
    from mmsets.data.table import read_rows

    return read_rows(path), path.parent


def items_digest(manifest: Manifest) -> str:
    """What the items are: their ids and fields, and each image file's size and modification time (a file
    changed on disk is other items)."""
    frame = manifest.frame
    digest = hashlib.sha256(frame.to_json(orient="split", default_handler=str).encode())
    for path in frame["image"]:
        stat = os.stat(path) if not is_missing(path) and os.path.isfile(path) else None
        digest.update(json.dumps([str(path), stat and [stat.st_size, stat.st_mtime_ns]]).encode())
    return digest.hexdigest()


def write_predictions(frame: pd.DataFrame, out: str | os.PathLike) -> list[Path]:
    """``frame`` as ``out`` (parquet) and beside it as CSV (a list of labels joined by "|"; ids, label names and
    any other text that a spreadsheet would read as a formula behind an apostrophe, as results.csv); the paths."""
    from mmsets.io import atomic_path
    from mmsets.report.export import safe_text

    out = Path(out)
    csv_path = out.with_suffix(".csv")
    with atomic_path(out) as tmp:
        frame.to_parquet(tmp, index=False)
    flat = frame.copy()
    for column in [c for c in (PREDICTED, MISSING) if c in flat.columns]:
        flat[column] = flat[column].map(lambda v: "|".join(v) if isinstance(v, (list, np.ndarray)) else v)
    flat = flat.rename(columns=safe_text)
    for column in flat.select_dtypes(include=["object", "string"]).columns:
        flat[column] = flat[column].map(safe_text)
    with atomic_path(csv_path) as tmp:
        flat.to_csv(tmp, index=False, float_format="%.6g")
    return [out, csv_path]


def load_run(run_dir: str | os.PathLike, features_dir: str | os.PathLike | None = None) -> TrainedRun:
    """A trained run directory (its ``model.pt``, read once with ``weights_only=True``) ready to ``predict``;
    an ensemble's directory loads its members (each a run directory beside it) with their weights.

    Runs trained before runs recorded their stores need ``features_dir``: the training stores, whose own
    records then give the recipe.
    """
    from mmsets.runs.scoring import is_ensemble, read_ensemble, read_run

    path = Path(run_dir)
    if is_ensemble(path):
        models = read_ensemble(path)
        return TrainedRun(path, dict(models.config), models)
    if not (path / MODEL).is_file():
        raise FileNotFoundError(f"{path}: no {MODEL}: not a trained run directory (nor an ensemble's)")
    models = read_run(path)
    config = dict(models.config)
    if "stores" not in config:
        if features_dir is None:
            raise PredictError(f"{path}: the run does not record how its stores were made (trained before "
                               f"mmsets recorded it): give the folder of its training stores (features_dir)")
        config["stores"] = store_recipe({name: store_path(features_dir, name) for name in config["features"]})
    return TrainedRun(path, config, models)
