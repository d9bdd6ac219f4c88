"""Refresh the lock and everything made from it (run by `make lock`).

1. ``requirements/lock.txt``: pip-compile of every extra of pyproject.toml (the whole tested environment,
   each package at one exact version), with ``constraints.in`` held and ``no-deps.in`` appended.
2. Subsets of that lock, never resolved again, so no version can differ from it: a group's packages are its
   requirements in pyproject.toml and, transitively, every locked package pip-compile says they pull in:
   - ``requirements/demo.txt``       what `make demo` installs (no OCR, no test tools)
   - ``requirements/workflow.txt``   Snakemake alone: the base environment of a `--use-conda` user
   - ``envs/{light,torch,ocr}.yaml`` the rules' conda environments, with ``envs/torch.post-deploy.sh`` for
     the no-deps packages (Snakemake copies the script next to the environment, so it names them itself).

Usage: python requirements/lock.py [--subsets-only]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
PYTHON = "3.11"
# group -> (extras of pyproject.toml, with the no-deps packages?, conda packages)
ENVIRONMENTS = {
    "light": ((), False, []),
    "torch": (("torch", "offline", "mlflow"), True, []),  # mlflow: train and ensemble jobs log to it (tracking)
    "ocr": (("ocr", "offline"), False, ["tesseract=5"]),  # the labels extractor embeds with the offline CNN
}
# subset -> (extras, with the core dependencies?)
SUBSETS = {"demo": (("torch", "offline", "workflow"), True), "workflow": (("workflow",), False)}
GENERATED = "# Made by `make lock` (requirements/lock.py) from requirements/lock.txt: do not edit.\n"


def compile_lock(keep: bool = False) -> None:
    """``keep``: the pins already in lock.txt stay, only what pyproject.toml gained is resolved."""
    extras = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    subprocess.run([sys.executable, "-m", "piptools", "compile", "--quiet", "--strip-extras", "--allow-unsafe",
                    "--no-emit-index-url", "--no-emit-find-links", "--newline=LF", *(() if keep else ("--rebuild",)),
                    "--constraint=requirements/constraints.in", *(f"--extra={e}" for e in extras),
                    "--output-file=requirements/lock.txt", "pyproject.toml"], cwd=ROOT, check=True)
    _drop_project(LOCK)  # the extras that name mmsets[...] make pip-compile lock the project itself
    no_deps = _lines(ROOT / "requirements" / "no-deps.in")
    with LOCK.open("a") as lock:
        lock.write("\n# installed with --no-deps (requirements/no-deps.in says why)\n")
        lock.writelines(f"{pin}\n    # via requirements/no-deps.in\n" for pin in no_deps)


def _drop_project(path: Path) -> None:
    kept, skipping = [], False
    for line in path.read_text().splitlines(keepends=True):
        if re.match(r"^[A-Za-z0-9]", line):
            skipping = line.startswith("mmsets @")
        if not skipping:
            kept.append(line)
    path.write_text("".join(kept))


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def read_lock() -> tuple[dict[str, str], dict[str, set[str]]]:
    """``{name: "name==version"}`` and ``{name: names of the packages it is pulled in by}`` from lock.txt."""
    pins, via, current = {}, {}, None
    for line in LOCK.read_text().splitlines():
        if re.match(r"^[A-Za-z0-9]", line):
            name = canonicalize_name(line.split("==")[0])
            pins[name], via[name], current = line.strip(), set(), name
        elif current and (m := re.match(r"^\s+#\s+(?:via\s+)?(?!via$)([A-Za-z0-9][\w.-]*)", line)):
            via[current].add(canonicalize_name(m.group(1)))
    return pins, via


def roots(extras: tuple[str, ...], core: bool = True) -> set[str]:
    """The package names pyproject.toml asks for: those of ``extras``, and the core dependencies if ``core``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names, todo, seen = set(), list(extras), set()
    for spec in project["dependencies"] if core else []:
        names.add(canonicalize_name(Requirement(spec).name))
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for spec in project["optional-dependencies"][extra]:
            req = Requirement(spec)
            if canonicalize_name(req.name) == canonicalize_name(project["name"]):
                todo.extend(req.extras)
            else:
                names.add(canonicalize_name(req.name))
    return names


def subset(extras: tuple[str, ...], pins: dict[str, str], via: dict[str, set[str]], core: bool = True) -> list[str]:
    """The locked pins of the packages ``extras`` need, found through the lock's own "via" lines."""
    chosen = roots(extras, core)
    while True:
        more = {name for name, parents in via.items() if parents & chosen} - chosen
        if not more:
            break
        chosen |= more
    missing = sorted(chosen - set(pins))
    if missing:
        raise SystemExit(f"not in the lock: {missing}; run `make lock`")
    return [pins[name] for name in sorted(chosen)]


def render_subsets() -> dict[Path, str | None]:
    """``{path: text}`` of every file made from lock.txt (None: the file must not exist)."""
    pins, via = read_lock()
    files: dict[Path, str | None] = {}
    for name, (extras, core) in SUBSETS.items():
        lines = subset(extras, pins, via, core)  # the demo extracts no faces: no no-deps packages
        files[ROOT / "requirements" / f"{name}.txt"] = GENERATED + "".join(f"{p}\n" for p in lines)
    no_deps = [pins[canonicalize_name(p.split("==")[0])] for p in _lines(ROOT / "requirements" / "no-deps.in")]
    for name, (extras, with_no_deps, conda) in ENVIRONMENTS.items():
        packages = [f"python={PYTHON}", "pip", *conda]
        files[ROOT / "envs" / f"{name}.yaml"] = (
            GENERATED + f"# The {name!r} rules' environment (see workflow/rules)."
            + ("\n# envs/torch.post-deploy.sh adds the packages installed without dependencies.\n"
               if with_no_deps else "\n")
            + "channels:\n  - conda-forge\n  - nodefaults\ndependencies:\n"
            + "".join(f"  - {p}\n" for p in packages) + "  - pip:\n"
            + "".join(f"      - {p}\n" for p in subset(extras, pins, via)))
        files[ROOT / "envs" / f"{name}.post-deploy.sh"] = (
            "#!/usr/bin/env bash\n" + GENERATED
            + "# Snakemake runs it once in the new environment, from a copy under .snakemake/conda/:\n"
            + "# it must not read files beside it.\nset -euo pipefail\n"
            + "python -m pip install --no-deps " + " ".join(no_deps) + "\n") if with_no_deps else None
    return files


def write_subsets() -> None:
    for path, text in render_subsets().items():
        if text is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        if path.suffix == ".sh":
            path.chmod(0o755)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subsets-only", action="store_true", help="keep lock.txt, remake what is made from it")
    parser.add_argument("--keep", action="store_true",
                        help="keep lock.txt's pins, resolve only the requirements pyproject.toml gained")
    args = parser.parse_args()
    if not args.subsets_only:
        compile_lock(keep=args.keep)
    write_subsets()


if __name__ == "__main__":
    main()
