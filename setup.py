"""The wheel carries the workflow: Snakefile, config.yaml and the folders it reads are copied under
mmsets/deploy/ at build time, so that `mmsets init DIR` writes a runnable workflow folder from an installed
mmsets (mmsets/deploy.py). Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

# What a workflow folder holds; mmsets.deploy.WORKFLOW_FILES names the same.
WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "envs", "profiles")


class BuildWithWorkflow(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout itself
            return
        target = Path(self.build_lib) / "mmsets" / "deploy"
        for name in WORKFLOW_FILES:
            source = Path(name)
            if source.is_dir():
                shutil.copytree(source, target / name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": BuildWithWorkflow})
