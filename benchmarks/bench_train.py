"""Training throughput and memory at the papers' feature sizes, every figure a ratio to a reference
measured in the same run.

    python benchmarks/bench_train.py [--items 2000] [--device auto] [--json out.json]

Feature stores shaped like the real job's (ResNeXt-101 WSL image and box vectors, 2048-d; RoBERTa-large
text vectors and token states, 1024-d; FaceNet faces, 512-d; COCO ids), written once to a temporary folder:

- DMMS, D = 1024 as in the paper: one training epoch on features cached in memory, against reading those
  features once from the stores (goal: epoch <= 5x the read), and against the same epoch one item at a time
  (goal: batched >= 10x faster);
- DM2S2 on the encoder's cached token states against re-encoding the tokens with a RoBERTa-large-shaped
  encoder (random weights) every epoch, which is what caching the states saves;
- peak memory (RSS) of training at N and 10N items, features preloaded and streamed from the stores: the
  preloaded path grows with the features, the streamed one stays flat.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from measure import parse_arguments, peak_in_child, peak_rss_mib

from mmsets.data.manifest import Manifest, read_manifest, write_manifest
from mmsets.data.sequences import SequenceDataset
from mmsets.data.sets import SetDataset
from mmsets.models.dm2s2 import dm2s2
from mmsets.models.dmms import dmms
from mmsets.runs.loop import configure_optimizer, make_loader
from mmsets.plan.spec import TrainConfig
from mmsets.runtime import resolve_device
from mmsets.store import RaggedStore, RaggedWriter
from mmsets.tasks import MultiLabelTask

GENRES = 23
# modality -> (dim, elements per item (low, high), kind): the real job's stores
SETS = {"image": (2048, (1, 1), "float"), "text": (1024, (1, 4), "float"), "bbox": (2048, (0, 10), "float"),
        "faces": (512, (0, 10), "float"), "objects": (1, (0, 10), "index")}
ROBERTA_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                     vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1)


def write_sets(root: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    ids = [f"i{i:06d}" for i in range(n)]
    for name, (dim, (low, high), kind) in SETS.items():
        attrs = {"kind": "index", "num_embeddings": 91} if kind == "index" else {}
        with RaggedWriter(root / f"{name}.h5", extractor=name, dim=dim, attrs=attrs,
                          dtype="float32" if kind == "index" else "float16") as w:
            for item_id in ids:
                k = int(rng.integers(low, high + 1))
                w.add(item_id, rng.integers(1, 91, (k, 1)).astype(np.float32) if kind == "index"
                      else rng.normal(size=(k, dim)).astype(np.float16))
    labels = [[f"g{j}" for j in np.flatnonzero(rng.random(GENRES) < 0.12)] or ["g0"] for _ in ids]
    frame = pd.DataFrame({"id": ids, "split": "train", "image": None, "labels": labels})
    write_manifest(Manifest(frame, [f"g{j}" for j in range(GENRES)], dataset="bench"), root / "manifest.parquet")
    return root


def write_tokens(root: Path, n: int, tokens: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with RaggedWriter(root / "tokens.h5", extractor="tokens", dim=1024, fields={"modality": ((), "int8")},
                      attrs={"modalities": json.dumps(["text:title", "text:plot", "ocr", "labels", "faces"])}) as w:
        for i in range(n):
            modality = (np.arange(tokens) * 5 // tokens).astype(np.int8)  # five spans, as many tokens each
            w.add(f"i{i:06d}", rng.normal(size=(tokens, 1024)).astype(np.float16), modality=modality)
    return root


def open_sets(root: Path, preload: bool | None = True) -> SetDataset:
    manifest = read_manifest(root / "manifest.parquet")
    stores = {name: RaggedStore(root / f"{name}.h5") for name in SETS}
    try:
        return SetDataset(manifest, stores, "train", preload=preload)
    finally:
        for store in stores.values():
            store.close()


def epoch(model, ds, batch_size: int, device, limit: int | None = None) -> tuple[float, int]:
    """Seconds of one training epoch (forward, loss, backward, step) over ``ds`` (its first ``limit`` items)."""
    task = MultiLabelTask(ds.label_names)
    optimizer = configure_optimizer(model, TrainConfig())
    model.train()
    subset = torch.utils.data.Subset(ds, range(limit)) if limit else ds
    subset.collate = ds.collate
    start = time.perf_counter()
    for batch in make_loader(subset, batch_size):
        batch = batch.to(device)
        loss = task.loss(model(batch), batch.labels, None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, len(subset)


def bench_dmms(root: Path, device, per_item_limit: int) -> dict:
    start = time.perf_counter()
    ds = open_sets(root)
    read = time.perf_counter() - start
    torch.manual_seed(0)
    model = dmms(input_dims=ds.input_dims, input_kinds=ds.input_kinds, n_classes=GENRES, d_model=1024).to(device)
    batched, n = epoch(model, ds, 64, device)
    single, m = epoch(model, ds, 1, device, limit=per_item_limit)
    return {"items": n, "read_s": read, "epoch_s": batched, "epoch_over_read": batched / read,
            "per_item_items_per_s": m / single, "batched_items_per_s": n / batched,
            "batched_over_per_item": (n / batched) / (m / single)}


def bench_dm2s2(root: Path, device, items: int, reencode_items: int) -> dict:
    from transformers import RobertaConfig, RobertaModel

    manifest = read_manifest(root / "manifest.parquet")
    manifest = Manifest(manifest.frame.iloc[:items].reset_index(drop=True), manifest.label_names, dataset="bench")
    ds = SequenceDataset(manifest, root / "tokens.h5", "train")
    torch.manual_seed(0)
    model = dm2s2(hidden_size=1024, n_classes=GENRES, n_modalities=ds.n_modalities).to(device)
    cached, n = epoch(model, ds, 32, device)
    torch.manual_seed(0)
    encoder = RobertaModel(RobertaConfig(**ROBERTA_LARGE)).eval().to(device)
    tokens = len(ds[0].hidden)
    ids = torch.randint(3, 50265, (min(8, reencode_items), tokens), device=device)
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(0, reencode_items, len(ids)):
            encoder(input_ids=ids)
    if device.type == "cuda":
        torch.cuda.synchronize()
    reencode = time.perf_counter() - start
    return {"items": n, "tokens_per_item": tokens, "cached_items_per_s": n / cached,
            "reencode_items_per_s": reencode_items / reencode,
            "cached_over_reencode": (n / cached) / (reencode_items / reencode)}


def memory_child(root: str, preload: str) -> None:
    """Build the training set and run one DMMS epoch; print the peak RSS in MiB (run in a fresh process)."""
    ds = open_sets(Path(root), preload=preload == "yes")
    torch.manual_seed(0)
    model = dmms(input_dims=ds.input_dims, input_kinds=ds.input_kinds, n_classes=GENRES, d_model=256)
    epoch(model, ds, 64, torch.device("cpu"))
    print(peak_rss_mib())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000, help="N, the items of the training set")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per item of the DM2S2 states")
    args = parse_arguments(parser, memory_child, child_args=2)
    device = resolve_device(args.device)
    results: dict = {"device": str(device), "items": args.items}
    with tempfile.TemporaryDirectory() as tmp:
        small, large = Path(tmp) / "n", Path(tmp) / "10n"
        small.mkdir(), large.mkdir()
        write_sets(small, args.items)
        results["dmms"] = bench_dmms(small, device, per_item_limit=min(args.items, 200))
        write_tokens(small, min(args.items, 500), args.tokens)
        results["dm2s2"] = bench_dm2s2(small, device, min(args.items, 500), reencode_items=16)
        write_sets(large, 10 * args.items, seed=1)
        results["memory_mib"] = {f"{label}_{size}": peak_in_child(__file__, str(root), "yes" if preload else "no")
                                 for size, root in (("n", small), ("10n", large))
                                 for label, preload in (("preloaded", True), ("streamed", False))}
    mem = results["memory_mib"]
    d, s = results["dmms"], results["dm2s2"]
    print(f"device {results['device']}, N = {args.items} items")
    print(f"DMMS epoch / read features once      {d['epoch_over_read']:8.2f}x  (goal <= 5; epoch {d['epoch_s']:.1f} s, "
          f"read {d['read_s']:.1f} s)")
    print(f"DMMS batched / per-item loop         {d['batched_over_per_item']:8.1f}x  (goal >= 10; "
          f"{d['batched_items_per_s']:.0f} vs {d['per_item_items_per_s']:.1f} items/s)")
    print(f"DM2S2 cached states / re-encoding    {s['cached_over_reencode']:8.1f}x  ({s['cached_items_per_s']:.0f} vs "
          f"{s['reencode_items_per_s']:.2f} items/s, {s['tokens_per_item']} tokens)")
    print(f"peak RSS, features preloaded: N {mem['preloaded_n']:.0f} MiB, 10N {mem['preloaded_10n']:.0f} MiB "
          f"({mem['preloaded_10n'] / mem['preloaded_n']:.2f}x)")
    print(f"peak RSS, features streamed:  N {mem['streamed_n']:.0f} MiB, 10N {mem['streamed_10n']:.0f} MiB "
          f"({mem['streamed_10n'] / mem['streamed_n']:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
