"""Extraction pipeline efficiency: end-to-end items/s (decode, transfer, model, store write; not the model's
loading) against the model alone on ready tensors, same device, batch size and model, measured in the same run; and each
extractor's peak memory at N and 10N items (it must stay flat: items stream through).

    python benchmarks/bench_pipeline.py [--items 64] [--device auto] [--batch-size 32] [--workers 2]
        [--extractors image,text,tokens,objects] [--paper] [--json out.json]

Items are the demo generator's (posters of 160 px, plots of a few paragraphs). ``--paper`` uses the papers'
architectures with random weights (ResNeXt-101 32x16d WSL, RoBERTa-large) where the default uses the
offline models. Efficiency = end-to-end items/s / model-only items/s (goal on a GPU: >= 0.8).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from measure import parse_arguments, peak_in_child, peak_rss_mib

from mmsets.data.demo import generate_demo
from mmsets.data.manifest import read_manifest, write_manifest
from mmsets.extract import make_params, run_extractor
from mmsets.extract.backbones import load_image_backbone, load_text_encoder, to_rgb
from mmsets.runtime import Runtime, resolve_device

SETTINGS = {
    "image": {"model": "efficientnet_lite0"},
    "text": {"model": "minilm-l6", "fields": ["plot"], "segment": "none"},
    "tokens": {"model": "minilm-l6", "modalities": ["text:title", "text:plot"], "max_length": 256},
    "objects": {"weights": "random", "min_size": 256, "max_size": 512},
}
PAPER = {"image": {"model": "resnext101_32x16d_wsl", "weights": "random", "image_size": 224},
         "text": {"model": "roberta-large", "weights": "random", "pooling": "cls"},
         "tokens": {"model": "roberta-large", "weights": "random"},
         "objects": {"min_size": 800, "max_size": 1333}}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed_batches(forward, batches: list, n_items: int, device: torch.device) -> float:
    forward(batches[0])  # warm-up: lazy init, cuDNN autotune
    _sync(device)
    start = time.perf_counter()
    for batch in batches:
        forward(batch)
    _sync(device)
    return n_items / (time.perf_counter() - start)


def model_only(name: str, settings: dict, manifest, device: torch.device, batch_size: int) -> float:
    """Items/s of the extractor's model on tensors already decoded, transformed and on the device."""
    n = len(manifest)
    random = settings.get("weights") == "random"
    if name == "image":
        backbone = load_image_backbone(settings["model"], device, image_size=settings.get("image_size"),
                                       pretrained=not random)
        paths = [p for p in manifest.frame["image"] if isinstance(p, str)]
        x = torch.stack([backbone.transform(to_rgb(Image.open(p))) for p in paths[:batch_size]]).to(device)
        return _timed_batches(backbone.features, [x] * math.ceil(n / batch_size), n, device)
    if name in ("text", "tokens"):
        kwargs = {"weights": "random"} if random else {}
        encoder = load_text_encoder(settings["model"], device, **kwargs)
        texts = [str(t) for t in manifest.text("plot").fillna("")]
        if name == "tokens":
            texts = [f"{title} {plot}" for title, plot in zip(manifest.text("title").fillna(""), texts)]
        length = settings.get("max_length", 256)
        texts = sorted(texts, key=len, reverse=True)  # the extractors batch longest first: as little padding
        batches = [encoder.tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=length,
                                     return_tensors="pt").to(device) for i in range(0, n, batch_size)]

        @torch.inference_mode()
        def forward(batch):
            return encoder.model(**batch).last_hidden_state

        return _timed_batches(forward, batches, n, device)
    if name == "objects":
        from mmsets.extract.objects import load_detector, pil_to_uint8

        detector = load_detector(make_params("objects", settings), device)
        paths = [p for p in manifest.frame["image"] if isinstance(p, str)]
        images = [pil_to_uint8(to_rgb(Image.open(p))).to(device) for p in paths[:batch_size]]
        return _timed_batches(detector.detect, [images] * math.ceil(n / batch_size), n, device)
    raise ValueError(f"no model-only measure for {name!r}")


def end_to_end(name: str, settings: dict, manifest_path: Path, out: Path, runtime: Runtime) -> float:
    """Items/s from the store's summary: decode, transfer, model and store writes, the model's loading left out."""
    run_extractor(name, manifest_path, out.with_suffix(".warm.h5"), settings, runtime)  # caches, lazy init
    return float(run_extractor(name, manifest_path, out, settings, runtime)["items_per_s"])


def peak_child(name: str, settings: str, manifest_path: str, out: str, runtime: str) -> None:
    """Run one extraction and print its peak RSS in MiB (run in a fresh process)."""
    run_extractor(name, manifest_path, out, json.loads(settings), Runtime(**json.loads(runtime)))
    print(peak_rss_mib())


def peak_rss(name: str, settings: dict, manifest_path: Path, out: Path, runtime: Runtime) -> float:
    runtime_json = json.dumps({k: getattr(runtime, k) for k in ("device", "batch_size", "num_workers", "progress")})
    return peak_in_child(__file__, name, json.dumps(settings), str(manifest_path), str(out), runtime_json)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--extractors", default="image,text,tokens,objects")
    parser.add_argument("--paper", action="store_true", help="the papers' architectures, random weights")
    parser.add_argument("--memory", action="store_true", help="also peak RSS at N and 10N items")
    args = parse_arguments(parser, peak_child, child_args=5)
    device = resolve_device(args.device)
    runtime = Runtime(device=str(device), batch_size=args.batch_size, num_workers=args.workers, progress=False)
    results: dict = {"device": str(device), "items": args.items, "batch_size": args.batch_size, "extractors": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sizes = [args.items, 10 * args.items] if args.memory else [args.items]
        manifests = {}
        for n in sizes:
            manifests[n] = tmp / f"demo{n}" / "manifest.parquet"
            write_manifest(generate_demo(tmp / f"demo{n}", n_items=n, seed=0, image_size=160, missing_image=0.0,
                                         missing_text=0.0), manifests[n])
        for name in args.extractors.split(","):
            settings = {**SETTINGS[name], **(PAPER.get(name, {}) if args.paper else {})}
            manifest = read_manifest(manifests[args.items])
            e2e = end_to_end(name, settings, manifests[args.items], tmp / f"{name}.h5", runtime)
            alone = model_only(name, settings, manifest, device, args.batch_size)
            row = {"settings": settings, "end_to_end_items_per_s": e2e, "model_only_items_per_s": alone,
                   "efficiency": e2e / alone}
            if args.memory:
                row["peak_rss_mib"] = {str(n): peak_rss(name, settings, manifests[n], tmp / f"{name}-{n}.h5", runtime)
                                       for n in sizes}
            results["extractors"][name] = row
    print(f"device {results['device']}, {args.items} items, batch {args.batch_size}, {args.workers} decode workers")
    print(f"{'extractor':10s} {'model':24s} {'end-to-end':>11s} {'model only':>11s} {'efficiency':>11s}"
          + ("   peak RSS N / 10N (MiB)" if args.memory else ""))
    for name, row in results["extractors"].items():
        line = (f"{name:10s} {row['settings'].get('model', row['settings'].get('weights', '')):24s} "
                f"{row['end_to_end_items_per_s']:9.1f}/s {row['model_only_items_per_s']:9.1f}/s "
                f"{row['efficiency']:10.2f}x")
        if args.memory:
            small, large = row["peak_rss_mib"].values()
            line += f"   {small:.0f} / {large:.0f} ({large / small:.2f}x)"
        print(line)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
