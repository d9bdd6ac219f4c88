"""k-fold cross-validation, the Ads-Parallelity protocol (DMMS Sec. 4.1, DM2S2 Sec. IV-A: five folds,
metrics averaged over the folds).

Folds cover every item of the manifest, whatever its ``split``: the manifest's own ``fold`` column when
it has one, else stratified folds on the label for binary and multiclass tasks (``StratifiedKFold``)
and plain shuffled folds for multi-label and regression tasks (``KFold``). For fold k the model is
trained on the other folds, minus a dev part (``dev_fraction``, stratified when the classes allow)
that selects the epoch and the decision rule, and tested once on fold k.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from mmsets.data.manifest import Manifest

log = logging.getLogger(__name__)

FOLD_COLUMN = "fold"


def _strata(manifest: Manifest) -> np.ndarray | None:
    """The single label of each item for binary/multiclass tasks, None for the others."""
    if manifest.task not in ("binary", "multiclass"):
        return None
    return np.array([labels[0] if len(labels) == 1 else "" for labels in manifest.frame["labels"]], dtype=object)


def assign_folds(manifest: Manifest, folds: int = 5, seed: int = 0) -> np.ndarray:
    """The fold (0 .. folds-1) of every manifest row, in row order."""
    n = len(manifest)
    if FOLD_COLUMN in manifest.frame.columns:
        return _given_folds(manifest, folds)
    if n < folds:
        raise ValueError(f"cv.folds={folds} but the manifest has only {n} items")
    fold_of = np.full(n, -1, np.int64)
    strata = _strata(manifest)
    if strata is not None and np.unique(strata, return_counts=True)[1].max() >= folds:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(n), strata)
    else:
        splitter = KFold(folds, shuffle=True, random_state=seed).split(np.zeros(n))
    for k, (_, test) in enumerate(splitter):
        fold_of[test] = k
    return fold_of


def _given_folds(manifest: Manifest, folds: int) -> np.ndarray:
    column = manifest.frame[FOLD_COLUMN]
    missing = column.isna().to_numpy()
    if missing.any():
        raise ValueError(f"item {manifest.frame['id'].iloc[int(np.argmax(missing))]!r}: empty {FOLD_COLUMN!r} "
                         f"({int(missing.sum())} such items); give every item a fold or drop the column")
    values = sorted(column.unique(), key=str)
    if len(values) != folds:
        raise ValueError(f"cv.folds={folds} but the manifest's {FOLD_COLUMN!r} column has {len(values)} folds "
                         f"{values[:10]}")
    index = {v: k for k, v in enumerate(values)}
    return column.map(index).to_numpy(np.int64)


def fold_manifest(manifest: Manifest, fold_of: np.ndarray, k: int, dev_fraction: float = 0.1,
                  seed: int = 0) -> Manifest:
    """A copy of ``manifest`` whose ``split`` makes fold ``k`` the test split, a ``dev_fraction`` of the
    other folds (stratified when every class has two items) the dev split and the rest train."""
    fold_of = np.asarray(fold_of)
    rest = np.flatnonzero(fold_of != k)
    if not len(rest) or not (fold_of == k).any():
        raise ValueError(f"fold {k}: needs items inside and outside the fold")
    n_dev = max(1, int(round(dev_fraction * len(rest))))
    if n_dev >= len(rest):
        raise ValueError(f"fold {k}: {len(rest)} training items leave none after a dev part of {n_dev}")
    strata = _strata(manifest)
    stratify = None
    if strata is not None:
        _, counts = np.unique(strata[rest], return_counts=True)
        if counts.min() >= 2 and n_dev >= len(counts) and len(rest) - n_dev >= len(counts):
            stratify = strata[rest]
    _, dev = train_test_split(rest, test_size=n_dev, stratify=stratify, random_state=seed + k)
    split = np.full(len(fold_of), "train", dtype=object)
    split[dev] = "dev"
    split[fold_of == k] = "test"
    frame = manifest.frame.copy()
    frame["split"] = split
    return Manifest(frame, list(manifest.label_names), manifest.task, manifest.dataset,
                    {**manifest.extra, "cv_fold": k})
