"""Data-parallel training over several processes, as `torchrun` starts them (``training.processes``): one
process per GPU (NCCL) or per CPU share (gloo). Each process trains on its own part of every epoch's items
(DistributedSampler) with the same weights (DistributedDataParallel averages the gradients); each scores the
whole dev and test sets the same way, and the first process writes the run directory.

Outside `torchrun` (no WORLD_SIZE in the environment) all of this is a no-op: one process, rank 0.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, number of processes) of this training."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return world()[0] == 0


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[None]:
    """Join the process group `torchrun` describes in the environment, if any, for the duration."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield
        return
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """A CUDA device becomes this process's own GPU (LOCAL_RANK)."""
    if device.type == "cuda" and world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def sum_over_processes(value: float, device: torch.device) -> float:
    if world()[1] == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item())
