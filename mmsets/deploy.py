"""`mmsets init DIR`: a runnable workflow folder (Snakefile, config.yaml, workflow/, envs/, profiles/) from an
installed mmsets, whose wheel carries them under mmsets/deploy/ (setup.py), or from the checkout it runs from."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mmsets

WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "envs", "profiles")


def workflow_source() -> Path:
    """The folder holding the workflow files: the installed package's deploy/, else the checkout's top."""
    package = Path(mmsets.__file__).resolve().parent
    for candidate in (package / "deploy", package.parent):
        if all((candidate / name).exists() for name in WORKFLOW_FILES):
            return candidate
    raise FileNotFoundError(f"this mmsets ({package}) carries no workflow: install it from a wheel built with "
                            f"`python -m build`, or run from a checkout")


def init_workflow(target: str | os.PathLike, force: bool = False) -> list[Path]:
    """Write the workflow files into ``target`` (made if missing); return what was written. Refuses to replace
    existing files unless ``force``; results, configs and data of your own in ``target`` are never touched."""
    source, target = workflow_source(), Path(target)
    existing = [target / name for name in WORKFLOW_FILES if (target / name).exists()]
    if existing and not force:
        raise FileExistsError(f"{target} already holds {', '.join(p.name for p in existing)}: pass --force to "
                              f"replace them (your config.yaml too)")
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name in WORKFLOW_FILES:
        tmp = target / f".{name}.init-{os.getpid()}"
        if (source / name).is_dir():
            shutil.copytree(source / name, tmp, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source / name, tmp)
        final = target / name
        if final.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)  # each file or folder appears whole
        written.append(final)
    return written
