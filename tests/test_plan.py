"""The plan (what the workflow imports when it builds the DAG) loads with numpy and torch out of reach."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import mmsets.plan

ROOT = Path(__file__).resolve().parents[1]
# mmsets.plan/__init__.py runs before any module of the package; the extract package's face names its registry.
ALSO_IMPORTED_BY_THE_WORKFLOW: list[str] = []
HEAVY = ["numpy", "torch", "pandas", "h5py"]

BLOCKER = """
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {heavy!r}:
            raise ImportError(f"{{name}} is blocked: the plan must not import it")
sys.meta_path.insert(0, Blocked())
import importlib
for module in {modules!r}:
    importlib.import_module(module)
print("imported", len({modules!r}))
"""


def plan_modules() -> list[str]:
    return ["mmsets.plan"] + [f"mmsets.plan.{m.name}" for m in pkgutil.iter_modules(mmsets.plan.__path__)]


def test_the_plan_and_the_registries_import_without_numpy_or_torch():
    modules = plan_modules() + ALSO_IMPORTED_BY_THE_WORKFLOW
    assert {"mmsets.plan.config", "mmsets.plan.layout", "mmsets.plan.spec", "mmsets.plan.errors",
            "mmsets.plan.extractors", "mmsets.plan.families"} <= set(modules)
    code = BLOCKER.format(heavy=HEAVY, modules=modules)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"imported {len(modules)}"


def test_the_blocker_blocks():
    done = subprocess.run([sys.executable, "-c", BLOCKER.format(heavy=HEAVY, modules=["mmsets.store"])], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode != 0 and "is blocked: the plan must not import it" in done.stderr
