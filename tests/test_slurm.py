"""The SLURM profile: a dry-run plans the DAG with the profile's resources and submits nothing;
on a one-node SLURM cluster started on this machine, the early stages build what a local run builds."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY_DEMO, run_snakemake

PROFILE = REPO / "profiles" / "slurm"
# Without --workflow-profile none, profiles/default (for local runs) is loaded too and wins key by key.
PROFILE_ARGS = ("--profile", str(PROFILE), "--workflow-profile", "none")
TINY = {"demo": TINY_DEMO, "birdnet": {"n_shards": 3}}
SHARDS = [f"results/birdnet/shard-{i:03d}{kind}.parquet" for i in range(3) for kind in ("", ".clips")]
EARLY = ["results/manifest/clips.parquet", *SHARDS]  # demo_data, manifest and birdnet_scan: five jobs
GPU_RULES = ("train_teacher", "train_student", "pseudo_label", "predict_validation")
CPU_RULES = ("birdnet_scan", "embed_shard", "mel_train_shard", "mel_soundscape_shard")
CPU_RULES += ("mel_validation_shard",)


def planned(out: str, rule: str) -> list[str]:
    """The dry-run's description (threads, resources, ...) of each job of ``rule``."""
    return re.findall(rf"^(?:rule|checkpoint) {rule}:\n(.*?)(?:\n\n|\Z)", out, re.M | re.S)


def test_slurm_profile_dry_run_plans_the_dag(tmp_path, monkeypatch):
    # A dry-run must run where there is no SLURM and must submit nothing: an sbatch that leaves a trace.
    fake_bin, trace = tmp_path / "bin", tmp_path / "sbatch-was-called"
    fake_bin.mkdir()
    (fake_bin / "sbatch").write_text(f"#!/bin/sh\ntouch {trace}\nexit 1\n")
    (fake_bin / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    work = tmp_path / "work"
    work.mkdir()

    proc = run_snakemake(work, *PROFILE_ARGS, "-n")
    out = proc.stdout + proc.stderr

    assert f"Using profile {PROFILE} for" in out and "workflow specific profile" not in out
    for rule in ("demo_data", "manifest", "birdnet_scan", *GPU_RULES, "fit_ensemble", "infer"):
        assert planned(out, rule), rule
    for rule in GPU_RULES:  # predict_validation's GPU comes from the profile alone
        for job in planned(out, rule):
            assert re.search(r"resources: .*\bgpu=1\b", job), job
    for rule in CPU_RULES:
        for job in planned(out, rule):
            assert "threads: 8\n" in job and re.search(r"resources: .*\bcpus_per_task=8\b", job), job
    for job in planned(out, "birdnet_scan"):  # the rule's memory follows the threads: 1000 + 500 * 8
        assert re.search(r"resources: .*\bmem_mb=5000\b", job), job
    assert not trace.exists()


# --- A one-node SLURM cluster on this machine ---------------------------------------------------


@dataclass
class Cluster:
    env: dict[str, str]  # to add to the environment of sbatch, squeue, ... (SLURM_CONF, PATH)
    partition: str
    own: bool  # started by the fixture (no accounts to guess)


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _sinfo(env: dict[str, str], fmt: str) -> list[str] | None:
    """``sinfo -h -o fmt`` split into words, or None when no controller answers."""
    if not shutil.which("sinfo"):
        return None
    try:
        proc = _run(["sinfo", "-h", "-o", fmt], 20, env)
    except subprocess.TimeoutExpired:
        return None
    return proc.stdout.split() if proc.returncode == 0 else None


def _sbin(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _install() -> str | None:
    """Install SLURM and munge with apt-get (root only, time-boxed); why it could not, else None."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "slurmctld, slurmd or munged missing, and cannot install them (not root, or no apt-get)"
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "slurm-wlm", "munge"]
    try:
        if _run(install, 150, env).returncode != 0:  # stale package lists: update once, then retry
            _run(["apt-get", "update", "-q"], 90, env)
            proc = _run(install, 150, env)
            if proc.returncode != 0:
                return f"apt-get install slurm-wlm munge failed: {proc.stderr.strip()[-300:]}"
    except subprocess.TimeoutExpired as err:
        return f"{' '.join(err.cmd)} took over {err.timeout:.0f} s"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _slurm_conf(folder: Path, munge_socket: Path) -> str:
    host = socket.gethostname().split(".")[0]
    mem_mb = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 * 8 // 10  # MemTotal, a little under
    return f"""\
ClusterName=pytest
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
NodeName={host} CPUs={os.cpu_count()} RealMemory={mem_mb} State=UNKNOWN
PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _tails(folder: Path) -> str:
    return "\n".join(f"{p.name}: {p.read_text(errors='replace')[-400:]}" for p in sorted(folder.glob("*.log")))


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A SLURM controller to submit to: one that sinfo already reaches, else a one-node cluster on this
    machine (installed with apt-get when missing, configured in a temporary folder through SLURM_CONF,
    its daemons stopped at the end, whatever happened). Skips with the reason when neither can be had."""
    partitions = _sinfo({}, "%P")
    if partitions:
        default = next((p for p in partitions if p.endswith("*")), partitions[0])
        yield Cluster({}, default.rstrip("*"), own=False)
        return
    if not all(map(_sbin, ("slurmctld", "slurmd", "munged"))):
        why = _install()
        if why or not all(map(_sbin, ("slurmctld", "slurmd", "munged"))):
            pytest.skip(why or "apt-get installed SLURM, but slurmctld, slurmd or munged is still missing")
    if os.geteuid() != 0:
        pytest.skip("starting slurmd needs root")

    folder = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    munge_socket, key = folder / "munge.socket", folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = folder / "slurm.conf"
    conf.write_text(_slurm_conf(folder, munge_socket))
    # The slurm-jobstep plugin removes every SLURM_* variable, SLURM_CONF too, before the srun it runs
    # inside each job: that srun would look for /etc/slurm/slurm.conf. A shim first on PATH puts it back.
    shim = folder / "bin" / "srun"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nSLURM_CONF="${{SLURM_CONF:-{conf}}}" exec {shutil.which("srun")} "$@"\n')
    shim.chmod(0o755)
    env = {"SLURM_CONF": str(conf), "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}"}
    daemons: list[subprocess.Popen] = []

    def start(*cmd: str) -> None:
        with open(folder / f"{Path(cmd[0]).name}.out", "w") as out:  # the daemon keeps its own copy
            daemons.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}))

    try:
        munge_files = [f"--{k}-file={folder}/munged.{k}" for k in ("pid", "log", "seed")]
        start(_sbin("munged"), "--foreground", "--force", f"--socket={munge_socket}", f"--key-file={key}", *munge_files)
        start(_sbin("slurmctld"), "-D", "-i", "-f", str(conf))
        start(_sbin("slurmd"), "-D", "-f", str(conf), "-N", socket.gethostname().split(".")[0])
        deadline = time.monotonic() + 60
        while (_sinfo(env, "%T") or [""])[0] != "idle":
            if time.monotonic() > deadline or any(d.poll() is not None for d in daemons):
                pytest.skip(f"the one-node SLURM cluster did not come up:\n{_tails(folder)}")
            time.sleep(1)
        yield Cluster(env, "main", own=True)
    finally:
        if any(d.poll() is None for d in daemons):
            _run(["scancel", "--full", "-u", getpass.getuser()], 20, env)
            for _ in range(20):  # let the cancelled jobs go before slurmd does
                if _run(["squeue", "-h"], 20, env).stdout.strip() == "":
                    break
                time.sleep(0.5)
        for daemon in reversed(daemons):
            daemon.terminate()
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


@pytest.mark.slurm
def test_slurm_run_builds_what_a_local_run_builds(slurm_cluster, tmp_path, monkeypatch):
    local, remote = tmp_path / "local", tmp_path / "slurm"
    for work in (local, remote):
        work.mkdir()
        (work / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    # Targets first: --configfile takes every word after it.
    run_snakemake(local, *EARLY, "--cores", "2", "--configfile", "tiny.yaml")

    for key, value in slurm_cluster.env.items():
        monkeypatch.setenv(key, value)
    slurm_args = [
        *PROFILE_ARGS,
        # One thread, so one CPU, per job: two shards side by side on a 2-CPU node. (--cores caps threads;
        # --set-resources replaces the profile's per-rule settings, whose 8 CPUs per shard the node lacks.)
        *("--jobs", "2", "--cores", "1", "--set-resources", "birdnet_scan:cpus_per_task=1"),
        *("--default-resources", f"slurm_partition={slurm_cluster.partition}"),
        # squeue: sacct needs an accounting database. Status checks 2, 14, 36, ... s after a submission or
        # a finish (each wait 10 s longer), not 40, 90, ...: a job here takes 15-35 s, two Snakemake starts.
        *("--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2"),
        "--slurm-keep-successful-logs",
        *(["--slurm-no-account"] if slurm_cluster.own else []),
    ]
    proc = run_snakemake(remote, *EARLY, *slurm_args, "--configfile", "tiny.yaml")
    out = proc.stdout + proc.stderr

    assert len(re.findall(r"has been submitted with SLURM jobid \d+", out)) == 5, out
    logs = remote / ".snakemake" / "slurm_logs"
    assert {p.name for p in logs.iterdir()} == {"rule_demo_data", "rule_manifest", "rule_birdnet_scan"}
    assert len(list((logs / "rule_birdnet_scan").rglob("*.log"))) == 3
    # Paths in the tables are relative (data_dir is), and BirdNET's results do not depend on threads.
    for rel in EARLY:
        pd.testing.assert_frame_equal(pd.read_parquet(local / rel), pd.read_parquet(remote / rel))
