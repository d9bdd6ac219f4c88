"""Modality erasure (DM2S2 Fig. 2): a trained token-sequence run scored on its test items re-encoded
without one modality at a time, beside its score on the full items.

The frozen encoder attends across spans, so erasing a modality means re-encoding each item without it
(the workflow's ``erase_tokens`` rule writes one such store per modality: the tokens extractor with that
source left out, test items only), not dropping its cached states. The model then sees no token of it.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from mmsets.data.manifest import read_manifest
from mmsets.io import write_json
from mmsets.plan.layout import ERASURE
from mmsets.runs.scoring import open_stores, read_run


def erasure(run_dir: str | os.PathLike, manifest_path: str | os.PathLike, store: str | os.PathLike,
            erased: Mapping[str, str | os.PathLike], device: str = "auto") -> dict[str, Any]:
    """Score run ``run_dir`` on the test split of its token ``store`` and of each ``erased`` store
    ({modality: store re-encoded without it}); write and return ``erasure.json``'s content: the full
    scores, and per modality the scores without it and their difference (``delta``, erased - full)."""
    run = read_run(run_dir)
    if run.is_kfold:
        raise ValueError(f"{run.path}: modality erasure scores the test split; k-fold runs have none")
    (fold,) = run.to(device).folds
    manifest = read_manifest(manifest_path)
    name = run.config["features"][0]

    def score(path: str | os.PathLike, modalities: list[str] | None, left_out: tuple[str, ...] = ()) -> tuple:
        with open_stores({name: path}) as stores:
            ds = fold.labelled(manifest, stores, "test", modalities=modalities, erased=left_out)
        return fold.score(ds).metrics, ds.modalities, len(ds)

    full, modalities, n_items = score(store, None)
    unknown = sorted(set(erased) - set(modalities))
    if unknown:
        raise ValueError(f"erased modalities {unknown} are not the run's {modalities}")
    rows = {}
    for modality in modalities:
        if modality not in erased:
            continue
        scores, _, _ = score(erased[modality], modalities, (modality,))
        rows[modality] = {"test": scores, "delta": {k: scores[k] - v for k, v in full.items()
                                                    if isinstance(v, float) and isinstance(scores.get(k), float)}}
    result = {"run": run.path.name, "n_items": n_items, "modalities": modalities, "full": full, "erased": rows}
    write_json(run.path / ERASURE, result)
    return result
