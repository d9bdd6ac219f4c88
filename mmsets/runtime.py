"""Settings that change how fast a job runs, never what it writes: the device, batch sizes, worker
processes, CPU threads. They travel as one ``Runtime`` (the workflow exports them as ``MMSETS_*``
environment variables, so changing them re-runs nothing).
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass

if typing.TYPE_CHECKING:
    import torch

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?|mps)$")


@dataclass(frozen=True)
class Runtime:
    device: str = "auto"  # auto: CUDA when there is one, else the CPU
    batch_size: int = 32  # items (extractors) or crops per forward pass
    num_workers: int = 2  # data-loading worker processes
    threads: int = 0  # CPU threads for torch; 0: leave torch's default
    # refuse larger images (skipped as too_large, counted): a memory guard below Pillow's own limit (about 179
    # megapixels; a 144-megapixel poster takes 2 GB to decode)
    max_pixels: int | None = None
    image_root: str | None = None  # where relative image paths are taken from
    progress: bool = True  # progress bars on stderr

    def __post_init__(self) -> None:
        if not DEVICE_PATTERN.match(str(self.device)):
            raise ValueError(f"runtime.device: {self.device!r} is not auto, cpu, cuda, cuda:N or mps")
        if self.batch_size < 1 or self.num_workers < 0 or self.threads < 0:
            raise ValueError("runtime: batch_size must be >= 1, num_workers and threads >= 0")

    @classmethod
    def from_env(cls, **overrides: typing.Any) -> "Runtime":
        """Defaults from ``MMSETS_DEVICE``, ``MMSETS_BATCH_SIZE``, ``MMSETS_NUM_WORKERS``, ``MMSETS_MAX_PIXELS``
        and ``OMP_NUM_THREADS`` (which Snakemake sets to a job's threads), then ``overrides``."""
        env = os.environ.get
        values = {"device": env("MMSETS_DEVICE", cls.device), "batch_size": int(env("MMSETS_BATCH_SIZE", cls.batch_size)),
                  "num_workers": int(env("MMSETS_NUM_WORKERS", cls.num_workers)),
                  "threads": int(env("OMP_NUM_THREADS", 0) or 0),
                  "max_pixels": int(env("MMSETS_MAX_PIXELS") or 0) or None}
        return cls(**{**values, **{k: v for k, v in overrides.items() if v is not None}})

    def replace(self, **changes: typing.Any) -> "Runtime":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Resources:
    """What one job asks the scheduler for: the workflow's ``threads:`` and ``resources:`` of a rule."""

    threads: int = 2  # CPU threads: torch's, or processes at once (tesseract)
    mem_mb: int = 4000
    gpu: bool = False  # runs on a GPU when there is one (the workflow then asks for runtime.gpu_jobs GPUs)


def resolve_device(device: "str | torch.device" = "auto") -> "torch.device":
    """``auto`` -> CUDA when available, else the CPU; anything else as torch reads it."""
    import torch  # here, so that naming extractors (the CLI) does not load torch

    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def worker_init(worker_id: int) -> None:
    """A DataLoader worker dies on SIGTERM instead of inheriting the CLI's handler (``mmsets.cli``): a worker
    raising SystemExit would wait on its queue's feeder thread, which nobody reads once the job stops."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
