"""Extraction throughput: batched extraction against one-item batches, measured in the same run.

    python benchmarks/bench_extract.py [--items 96] [--device auto]

Images come from the demo generator (nothing third-party); the models are the offline defaults.
Prints items/s for each setting and its ratio to the one-item reference.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mmsets.data.demo import generate_demo
from mmsets.extract.image import ImageParams, extract_image
from mmsets.extract.text import TextParams, extract_text
from mmsets.runtime import Runtime


def timed(fn, **kwargs) -> float:
    start = time.perf_counter()
    fn(**kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=96)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = generate_demo(tmp, n_items=args.items, seed=0, image_size=224, missing_image=0.0,
                                 missing_text=0.0)
        rows = []
        runtime = Runtime(device=args.device, progress=False)
        settings = [("image", "batch 1, no workers (reference)", dict(batch_size=1, num_workers=0)),
                    ("image", "batch 32, no workers", dict(batch_size=32, num_workers=0)),
                    ("image", "batch 32, 2 decode workers", dict(batch_size=32, num_workers=2))]
        for i, (name, label, kw) in enumerate(settings):
            seconds = timed(extract_image, manifest=manifest, out_path=tmp / f"image{i}.h5", params=ImageParams(),
                            runtime=runtime.replace(**kw))
            rows.append((name, label, args.items / seconds))
        text = TextParams(fields=["plot"], segment="none")  # one element per item, as the figures in BENCHMARKS.md
        for i, (label, bs) in enumerate([("batch 1 (reference)", 1), ("batch 64, length-sorted", 64)]):
            seconds = timed(extract_text, manifest=manifest, out_path=tmp / f"text{i}.h5", params=text,
                            runtime=runtime.replace(batch_size=bs))
            rows.append(("text", label, args.items / seconds))
    reference = {}
    print(f"{'extractor':10s} {'setting':34s} {'items/s':>9s} {'ratio':>7s}")
    for name, label, rate in rows:
        reference.setdefault(name, rate)
        print(f"{name:10s} {label:34s} {rate:9.1f} {rate / reference[name]:7.2f}")


if __name__ == "__main__":
    main()
