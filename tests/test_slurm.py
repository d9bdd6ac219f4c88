"""The small DAG on a real SLURM cluster: Debian's slurmctld and slurmd on this machine (a one-node cluster),
driven by snakemake-executor-plugin-slurm through profiles/slurm, with sharded extraction. Its
stores and metrics must equal those of the same DAG run locally.

Starting the daemons needs root (CI runs as root); `make system` installs slurm-wlm and munge."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from workdirs import workdir_config

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
SMALL = ROOT / "tests" / "configs" / "small.yaml"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")
# ports of their own, so a cluster this machine already belongs to is left alone
SLURM_CONF = """\
ClusterName=mmsets-test
SlurmctldHost=localhost
SlurmctldPort=6917
SlurmdPort=6918
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldParameters=enable_configless
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MinJobAge=3600
ReturnToService=2
NodeName=localhost CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def require(reason):
    if os.environ.get("MMSETS_REQUIRE_SLURM") and os.geteuid() == 0:
        pytest.fail(f"MMSETS_REQUIRE_SLURM is set but {reason}")
    pytest.skip(reason)


def _memory_mb():
    with open("/proc/meminfo") as meminfo:
        total_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    return total_kb // 1024 * 9 // 10


def _start_munge():
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
        return
    if not Path("/etc/munge/munge.key").exists():
        subprocess.run(["mungekey", "--create"], check=True)
    for folder in ("/run/munge", "/var/log/munge", "/var/lib/munge", "/etc/munge"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "munge", "munge")
    shutil.chown("/etc/munge/munge.key", "munge", "munge")
    subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", shutil.which("munged")], check=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node SLURM cluster for this module: {env: its environment, log: where its daemons log}."""
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld and slurmd needs root (CI runs as root)")
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        require(f"{missing} are not installed (make system: apt-get install slurm-wlm munge)")
    if importlib_missing("snakemake_executor_plugin_slurm"):
        require("snakemake-executor-plugin-slurm is not installed (make setup)")
    root = tmp_path_factory.mktemp("slurm")
    for folder in ("state", "spool"):
        (root / folder).mkdir()
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(root=root, cpus=os.cpu_count(), memory=_memory_mb()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    _start_munge()
    subprocess.run(["slurmctld", "-f", str(conf)], env=env, check=True)
    subprocess.run(["slurmd", "--conf-server", "localhost:6917"], env=env, check=True)  # jobs get the config
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout
            if state.strip() == "idle":
                break
            time.sleep(1)
        else:
            pytest.fail(f"the node did not come up: {state!r}\n{_tail(root)}")
        yield {"env": env, "root": root}
    finally:
        subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True)  # slurmctld and slurmd
        for pid_file in ("slurmd.pid", "slurmctld.pid"):
            pid = root / pid_file
            if pid.exists():
                try:
                    os.kill(int(pid.read_text()), 15)
                except (ProcessLookupError, ValueError):
                    pass


def importlib_missing(module):
    import importlib.util

    return importlib.util.find_spec(module) is None


def _tail(root):
    return "\n".join(f"{name}:\n" + (root / name).read_text()[-2000:] for name in ("slurmctld.log", "slurmd.log")
                     if (root / name).exists())


def _workdir(path):
    config = yaml.safe_load(SMALL.read_text())
    config["shards"] = {"image": 2, "text": 2}
    workdir_config(path).write_text(yaml.safe_dump(config))
    return path


def _snakemake(workdir, *args, env=None):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir), *args,
           "results/demo/report.html"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.mark.slow
def test_the_sharded_dag_on_slurm_equals_a_local_run(cluster, tmp_path):
    from mmsets.store import RaggedStore

    local = _workdir(tmp_path / "local")
    _snakemake(local, "--cores", "2")
    on_slurm = _workdir(tmp_path / "slurm")
    small = "mem_mb=1000"  # the rules ask for more than a small CI machine has; nothing enforces it here
    proc = _snakemake(on_slurm, "--workflow-profile", str(ROOT / "profiles" / "slurm"), "--jobs", "4",
                      "--default-resources", "slurm_partition=debug", small, "runtime=30",
                      "--set-resources", *(f"{rule}:{small}" for rule in ("extract", "extract_shard", "train")),
                      "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
                      "--latency-wait", "5", env=cluster["env"])
    submitted = proc.stdout.count("submitted with SLURM jobid") + proc.stderr.count("submitted with SLURM jobid")
    assert submitted >= 10  # prepare, 2 + 2 shards, 2 gathers, 4 trains, report

    features = sorted(p.relative_to(local) for p in (local / "results/demo/features").rglob("*.h5"))
    assert any("shards" in str(p) for p in features)
    assert features == sorted(p.relative_to(on_slurm) for p in (on_slurm / "results/demo/features").rglob("*.h5"))
    for path in features:
        with RaggedStore(local / path) as a, RaggedStore(on_slurm / path) as b:
            assert b.ids == a.ids, path
            np.testing.assert_array_equal(b.offsets, a.offsets)
            np.testing.assert_array_equal(b.file["data"][:], a.file["data"][:], err_msg=str(path))
    runs = sorted(p.name for p in (local / "results/demo/runs").iterdir())
    assert runs == sorted(p.name for p in (on_slurm / "results/demo/runs").iterdir()) and len(runs) == 4
    for run in runs:
        a = json.loads((local / "results/demo/runs" / run / "metrics.json").read_text())
        b = json.loads((on_slurm / "results/demo/runs" / run / "metrics.json").read_text())
        scalars = {k: v for k, v in a["test"].items() if isinstance(v, float)}
        assert scalars and {k: b["test"][k] for k in scalars} == pytest.approx(scalars, abs=1e-9), run
    assert (on_slurm / "results/demo/report.html").exists()
