"""The mixed precision extractors run their networks under."""

from __future__ import annotations

import contextlib
import typing

if typing.TYPE_CHECKING:
    import torch


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (halves memory and time, features are stored as float16 anyway); none on CPU."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
