"""How a run was made: the code (mmsets version, git commit), the packages, and the machine it ran on.

Written into each run's ``metrics.json`` as ``provenance`` (docs/formats.md lists its keys) and shown per run
in the report. Every part is best effort: a value that cannot be known (no git, no GPU) is None, never an error.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import mmsets

# The packages whose versions change a result: the models' libraries and the numerical stack.
PACKAGES = ("torch", "torchvision", "timm", "transformers", "sentence-transformers", "facenet-pytorch",
            "scikit-learn", "lightgbm", "numpy", "pandas", "h5py", "pillow", "optuna", "snakemake")
GIT_TIMEOUT_S = 5


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """{distribution: version} of the installed ones among ``names``."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _git(*args: str, cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(where: str | os.PathLike | None = None) -> tuple[str | None, bool | None]:
    """(commit, whether tracked files differ from it) of the repository holding ``where`` (default: the mmsets
    source, the code that ran); (None, None) outside a repository or without git."""
    cwd = Path(where) if where is not None else Path(mmsets.__file__).resolve().parent
    commit = _git("rev-parse", "HEAD", cwd=cwd)
    if commit is None:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=cwd)
    return commit, (bool(status) if status is not None else None)


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, OSError, ValueError):
        return None


def _gpu(device: str | None) -> str | None:
    if not device or not device.startswith("cuda") or "torch" not in sys.modules:
        return None
    import torch

    try:
        return torch.cuda.get_device_name(torch.device(device))
    except (RuntimeError, AssertionError):
        return None


def provenance(device: str | None = None) -> dict[str, Any]:
    """The run's provenance: code, packages and machine; ``device`` is the torch device it trained on
    (None for a family fitted without torch)."""
    commit, dirty = git_state()
    return {
        "mmsets": mmsets.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine() or None,
        "cpu_count": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "device": device,
        "gpu": _gpu(device),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "packages": package_versions(),
    }
