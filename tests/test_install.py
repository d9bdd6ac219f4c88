"""Locked installs: the lock covers pyproject.toml, what is made from it is up to date, the environment the tests
run in is the lock, the conda environments' post-deploy script works from a copy, and the workflow builds its
DAG with Snakemake alone."""

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mmsets.extract.weights import MPNET_DISTRIBUTIONS
from workdirs import workdir_config

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
LOCK = ROOT / "requirements" / "lock.txt"
IN_PROJECT_VENV = Path(sys.prefix).resolve() == (ROOT / ".venv").resolve()
needs_project_venv = pytest.mark.skipif(not IN_PROJECT_VENV and not os.environ.get("CI"),
                                        reason="checks the environment `make setup` builds (.venv)")


def lock_module():
    spec = importlib.util.spec_from_file_location("lock", ROOT / "requirements" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def locked() -> dict[str, str]:
    return {name: pin.split("==")[1] for name, pin in lock_module().read_lock()[0].items()}


def no_deps_names() -> set[str]:
    return {canonicalize_name(line.split("==")[0]) for line in lock_module()._lines(ROOT / "requirements" / "no-deps.in")}


def pins_of(text: str) -> dict[str, str]:
    return {canonicalize_name(m[1]): m[2] for m in re.finditer(r"^\s*(?:- )?([A-Za-z0-9][\w.-]*)==(\S+)$", text, re.M)}


def test_every_requirement_of_pyproject_is_locked_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = locked()
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    for spec in map(Requirement, specs):
        if canonicalize_name(spec.name) == "mmsets":
            continue
        assert canonicalize_name(spec.name) in pins, f"{spec.name} is not in requirements/lock.txt: run `make lock`"
        assert spec.specifier.contains(pins[canonicalize_name(spec.name)], prereleases=True), \
            f"{spec} but the lock has {pins[canonicalize_name(spec.name)]}: run `make lock`"


def test_core_dependencies_pin_no_heavy_package_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in map(Requirement, project["dependencies"] + project["optional-dependencies"]["torch"]
                    + project["optional-dependencies"]["ocr"]):
        if spec.name in ("torch", "torchvision", "easyocr", "google-cloud-vision"):
            assert not any(s.operator == "==" for s in spec.specifier), spec


def test_files_made_from_the_lock_are_up_to_date():
    for path, text in lock_module().render_subsets().items():
        if text is None:
            assert not path.exists(), f"{path.relative_to(ROOT)} should not exist: run `make lock`"
        else:
            assert path.read_text() == text, f"{path.relative_to(ROOT)} is stale: run `make lock`"


def test_environments_hold_locked_versions_only_and_the_light_one_has_no_torch():
    pins = locked()
    for name in ("light", "torch", "ocr"):
        env = yaml.safe_load((ROOT / "envs" / f"{name}.yaml").read_text())
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        for line in pip:
            package, version = line.split("==")
            assert pins[canonicalize_name(package)] == version, f"envs/{name}.yaml: {line}"
    light = pins_of((ROOT / "envs" / "light.yaml").read_text())
    assert "torch" not in light and "numpy" in light and "pandas" in light
    assert "tesseract=5" in (ROOT / "envs" / "ocr.yaml").read_text()
    assert "torch" not in pins_of((ROOT / "requirements" / "workflow.txt").read_text())


def test_every_rule_names_its_own_environment():
    rules = {p.stem: p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk")}
    for stage, text in rules.items():
        rule_count = len(re.findall(r"^(?:rule|checkpoint) \w+:", text, re.M))
        assert rule_count == len(re.findall(r"^    conda:", text, re.M)), f"{stage}.smk: a rule without conda:"
    assert rules["data"].count('"../../envs/light.yaml"') == rules["data"].count("conda:")
    assert '"../../envs/light.yaml"' in rules["report"] and '"../../envs/torch.yaml"' in rules["train"]
    assert "extractor_env" in rules["extract"]
    from mmsets.plan.extractors import EXTRACTORS, environment
    assert {environment(name) for name in EXTRACTORS} == {"torch", "ocr"}
    assert all((ROOT / "envs" / f"{environment(name)}.yaml").exists() for name in EXTRACTORS)


@needs_project_venv
def test_the_test_environment_is_the_lock():
    wrong = {}
    for name, version in locked().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"(locked, installed) differ: {wrong}; run `make setup`"


@needs_project_venv
def test_pip_check_complains_only_of_the_no_deps_packages():
    proc = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    complaining = {canonicalize_name(line.split()[0]) for line in proc.stdout.splitlines() if line.strip()}
    optional = {canonicalize_name(dist) for dist in MPNET_DISTRIBUTIONS}  # the README's --no-deps install
    assert complaining <= no_deps_names() | optional, proc.stdout


def _venv(path: Path) -> Path:
    venv.create(path, with_pip=True, symlinks=True)
    return path / "bin"


@pytest.mark.slow
def test_post_deploy_script_installs_the_no_deps_packages_from_a_copy(tmp_path):
    """As Snakemake does: the environment file and its script copied elsewhere, the script run inside the new
    environment (conda cannot reach its channels here: a venv stands in for the environment)."""
    copies = tmp_path / ".snakemake" / "conda"
    copies.mkdir(parents=True)
    for name in ("light", "torch", "ocr"):
        shutil.copy(ROOT / "envs" / f"{name}.yaml", copies / f"{name}0123abcd.yaml")
    scripts = sorted((ROOT / "envs").glob("*.post-deploy.sh"))
    assert [s.name for s in scripts] == ["torch.post-deploy.sh"]
    script = copies / "torch0123abcd.post-deploy.sh"
    shutil.copy(scripts[0], script)
    bin_dir = _venv(tmp_path / "env")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(tmp_path / "env")}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shown = subprocess.run([str(bin_dir / "python"), "-m", "pip", "list", "--format=freeze"], capture_output=True,
                           text=True).stdout
    installed = pins_of(shown)
    pins = locked()
    for name in no_deps_names():
        assert installed.get(name) == pins[name], shown
    assert "torch" not in installed  # installed without their stale dependencies


@pytest.mark.slow
def test_snakemake_alone_builds_the_mmimdb_dag(tmp_path, mmimdb_sample):
    """The base environment of a `--use-conda` user: Snakemake and its own dependencies, nothing of mmsets'."""
    bin_dir = _venv(tmp_path / "venv")
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "-r",
                    str(ROOT / "requirements" / "workflow.txt")], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    no_numpy = subprocess.run([str(bin_dir / "python"), "-c", "import numpy"], capture_output=True, env=env)
    assert no_numpy.returncode != 0
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "config.yaml", workdir_config(work))
    (work / "sample.yaml").write_text(yaml.safe_dump({"datasets": {"mmimdb": {"root": str(mmimdb_sample)}}}))
    proc = subprocess.run([str(bin_dir / "snakemake"), "-n", "--snakefile", str(SNAKEFILE), "--directory",
                           str(work), "results/mmimdb/report.html", "--configfile", "config.yaml", "sample.yaml"],
                          cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert counts["prepare_mmimdb"] == "1" and counts["report"] == "1"
    assert int(counts["extract"]) >= 9 and int(counts["train"]) > 0
    assert "download_mmimdb" not in counts  # the sample's root is used, nothing is downloaded


@pytest.mark.slow
def test_the_wheel_carries_the_workflow_and_init_writes_a_folder_snakemake_plans(tmp_path):
    """A wheel built from the checkout, unpacked as pip would install it, with no checkout on the path: `mmsets
    init` writes the workflow folder and Snakemake plans the demo from it."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("mmsets-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    for name in ("Snakefile", "config.yaml", "workflow/rules/common.smk", "workflow/schemas/config.schema.yaml",
                 "envs/torch.yaml", "profiles/slurm/config.yaml", "workflow/configs/mpnet.yaml"):
        assert f"mmsets/deploy/{name}" in names, f"the wheel lacks {name}"
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import mmsets; print(mmsets.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site))
    init = subprocess.run([sys.executable, "-m", "mmsets", "init", "wf"], cwd=tmp_path, env=env, capture_output=True,
                          text=True)
    assert init.returncode == 0, init.stderr
    again = subprocess.run([sys.executable, "-m", "mmsets", "init", "wf"], cwd=tmp_path, env=env, capture_output=True,
                           text=True)
    assert again.returncode == 1 and "--force" in again.stderr  # an existing workflow folder is not overwritten
    plan = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "results/demo/report.html"],
                          cwd=tmp_path / "wf", env=env, capture_output=True, text=True)
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]
    assert re.search(r"^train\s+\d+$", plan.stdout, re.M)
