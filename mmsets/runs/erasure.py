"""Modality erasure (DM2S2 Fig. 2): a trained token-sequence run scored on its test items re-encoded
without one modality at a time, beside its score on the full items.

The frozen encoder attends across spans, so erasing a modality means re-encoding each item without it
(the workflow's ``erase_tokens`` rule writes one such store per modality: the tokens extractor with that
source left out, test items only), not dropping its cached states. The model then sees no token of it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from mmsets.data.manifest import read_manifest
from mmsets.data.sequences import SequenceDataset
from mmsets.io import write_json
from mmsets.metrics import decision_from_dict
from mmsets.runs.checkpoint import load_checkpoint
from mmsets.runs.learner import learner_for
from mmsets.runs.record import ERASURE, MODEL
from mmsets.runtime import resolve_device
from mmsets.store import RaggedStore
from mmsets.tasks import task_from_dict

def erasure(run_dir: str | os.PathLike, manifest_path: str | os.PathLike, store: str | os.PathLike,
            erased: Mapping[str, str | os.PathLike], device: str = "auto") -> dict[str, Any]:
    """Score run ``run_dir`` on the test split of its token ``store`` and of each ``erased`` store
    ({modality: store re-encoded without it}); write and return ``erasure.json``'s content: the full
    scores, and per modality the scores without it and their difference (``delta``, erased - full)."""
    run_dir = Path(run_dir)
    model, config = load_checkpoint(run_dir / MODEL)
    if "cv" in config:
        raise ValueError(f"{run_dir}: modality erasure scores the test split; k-fold runs have none")
    model.to(resolve_device(device))
    manifest = read_manifest(manifest_path)
    task = task_from_dict(config.get("task"), config["label_names"])
    decision = decision_from_dict(config["decision"])
    learner = learner_for(model)

    def score(path: str | os.PathLike, modalities: list[str] | None, left_out: tuple[str, ...] = ()) -> tuple:
        with RaggedStore(path) as opened:
            ds = SequenceDataset(manifest, opened, "test", label_names=config["label_names"], modalities=modalities,
                                 erased=left_out)
        ds.labels = task.targets(manifest, ds)
        outputs = learner.predict(ds, config["training"]["batch_size"], task)
        return task.metrics(task.truth(ds.labels), outputs, decision), ds.modalities, len(ds)

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
    result = {"run": run_dir.name, "n_items": n_items, "modalities": modalities, "full": full, "erased": rows}
    write_json(run_dir / ERASURE, result)
    return result
