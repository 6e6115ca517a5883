"""The study through a real SLURM cluster (single node on localhost, started by this module).

Skipped where SLURM cannot run (not root, Debian packages `slurm-wlm munge` absent, daemons do not
start); set GNC_REQUIRE_SLURM=1 to turn those skips into failures. `.ci/run` installs the packages.

The cluster (tests/slurm_cluster.py) has two partitions on one node, `cpu` (default) and `gpu`, and
two fake GPUs. The tiny study runs through `profiles/slurm` with only the overrides a CI machine
needs (ci_profile below: node size, partition names, polling speed) and must give the same
metrics.nc as a local run; training on CPU is deterministic.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TINY_CONFIG
from slurm_cluster import LocalSlurm, SlurmUnavailable, unavailable_reason

pytestmark = pytest.mark.slurm

#: wall-clock limit for one snakemake run through SLURM: a status-query hang must not eat CI time
SLURM_RUN_TIMEOUT = int(os.environ.get("GNC_SLURM_TIMEOUT", "300"))


def _skip_or_fail(why: str):
    if os.environ.get("GNC_REQUIRE_SLURM") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    why = unavailable_reason()
    if why:
        _skip_or_fail(why)
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"), gpus=2, partitions={"cpu": True, "gpu": False},
                         mem_mb=64000)
    try:
        cluster.start()
    except SlurmUnavailable as err:
        _skip_or_fail(str(err))
    sys.stderr.write(f"\nlocal SLURM up in {cluster.start_seconds:.1f} s ({cluster.root})\n")
    yield cluster
    cluster.stop()


def ci_profile(dest: Path, cpus: int) -> Path:
    """profiles/slurm with what differs on a 2-core CI machine; everything else as users get it."""
    prof = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    prof.update({
        # group width: half the node, so the evaluation jobs of two runs share it side by side
        "cores": max(1, cpus // 2),
        "latency-wait": 5,                              # local disk, no NFS lag
        "retries": 0,                                   # fail fast in a test
        # Poll quickly: jobs last ~15 s here. The plugin waits this long after a submission, then
        # 10 s longer after every poll that finds nothing finished (3, 16, 39, 72 s, ...).
        "seconds-between-status-checks": 3,
        "slurm-init-seconds-before-status-checks": 3,
        "slurm-no-account": True,                       # this cluster has no accounts
        "slurm-keep-successful-logs": True,             # for the failure message below
    })
    prof.pop("set-threads", None)                       # 1 thread per job, as in the local reference run
    prof["default-resources"] = {**prof.get("default-resources", {}), "slurm_partition": "cpu"}
    prof["set-resources"]["train"]["slurm_partition"] = "gpu"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))
    return dest


def start_snakemake(workdir: Path, args: list[str], env: dict | None = None) -> subprocess.Popen:
    """snakemake on the real Snakefile in `workdir` (own process group, output to snakemake.out)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *args]
    with open(workdir / "snakemake.out", "w") as log:
        return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def run_snakemake(workdir: Path, args: list[str], env: dict | None = None, timeout: float = 600,
                  cluster: LocalSlurm | None = None) -> subprocess.CompletedProcess:
    """Run and wait; on timeout the whole process group is killed (and the cluster's jobs
    cancelled) and the test fails with the tail of the output."""
    return finish_snakemake(workdir, start_snakemake(workdir, args, env), timeout, cluster)


def finish_snakemake(workdir: Path, proc: subprocess.Popen, timeout: float = 600,
                     cluster: LocalSlurm | None = None) -> subprocess.CompletedProcess:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if cluster is not None:
            cluster.run("scancel", "--full", "-u", "root", check=False)
        rc = None
    out = (workdir / "snakemake.out").read_text(errors="replace")
    if rc != 0:
        slurm_logs = ""
        for f in sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))[-3:]:
            slurm_logs += f"\n--- {f}\n" + f.read_text(errors="replace")[-3000:]
        what = f"timed out after {timeout} s" if rc is None else f"exit {rc}"
        raise AssertionError(f"snakemake {' '.join(map(str, proc.args[8:]))}: {what}\n{out[-5000:]}{slurm_logs}"
                             + (f"\n{cluster.diagnostics()}" if cluster is not None else ""))
    return subprocess.CompletedProcess(proc.args, rc, out, "")


def test_fake_gpus_are_bound_to_jobs(slurm):
    """SLURM accounts the fake GPUs and exports CUDA_VISIBLE_DEVICES only to jobs that ask."""
    one = slurm.run("srun", "-n1", "-p", "gpu", "--gpus=1", "printenv", "CUDA_VISIBLE_DEVICES").stdout.split()
    both = slurm.run("srun", "-n1", "-p", "gpu", "--gpus=2", "printenv", "CUDA_VISIBLE_DEVICES").stdout.split()
    none = slurm.run("srun", "-n1", "printenv", "CUDA_VISIBLE_DEVICES", check=False)
    assert len(one) == 1 and one[0] in ("0", "1")
    assert both == ["0,1"]
    assert none.returncode != 0 and not none.stdout.strip()  # printenv: variable not set
    too_many = slurm.run("srun", "-n1", "-p", "gpu", "--gpus=3", "true", check=False, timeout=30)
    assert too_many.returncode != 0  # only 2 GPUs exist


def _rule_of(job: dict) -> str:
    return job.get("Comment", "").removeprefix("rule_").split("_wildcards_")[0]


N_RUNS = sum(len(e["arch"]) * len(e["tau"]) * len(e["d"]) * len(e["K"]) * len(e["seed"])
             for e in TINY_CONFIG["experiments"].values())
TARGET = "results/metrics.nc"


@pytest.fixture(scope="module")
def slurm_study(slurm, tmp_path_factory):
    """The tiny study up to metrics.nc, once through SLURM and once locally (at the same time: the
    SLURM run mostly waits for status polls). Returns (slurm workdir, local workdir, new SLURM jobs)."""
    tmp = tmp_path_factory.mktemp("slurm_study")
    cfg = yaml.safe_dump(TINY_CONFIG)
    local, cluster_wd = tmp / "local", tmp / "slurm"
    for wd in (local, cluster_wd):
        wd.mkdir()
        (wd / "config.yaml").write_text(cfg)
    profile = ci_profile(tmp / "profiles" / "slurm-ci", slurm.cpus)
    seen_before = {j.get("JobId") for j in slurm.jobs()}

    t0 = time.monotonic()
    local_proc = start_snakemake(local, ["--workflow-profile", str(ROOT / "profiles" / "local"), "--cores", "1",
                                         TARGET])
    try:
        run_snakemake(cluster_wd, ["--workflow-profile", str(profile), TARGET], env=slurm.env,
                      timeout=SLURM_RUN_TIMEOUT, cluster=slurm)
    except BaseException:
        os.killpg(local_proc.pid, signal.SIGKILL)
        local_proc.wait()
        raise
    t_slurm = time.monotonic() - t0
    finish_snakemake(local, local_proc, timeout=max(60, 600 - t_slurm))
    sys.stderr.write(f"\ntiny study ({TARGET}): through SLURM {t_slurm:.0f} s, local run (alongside) "
                     f"done after {time.monotonic() - t0:.0f} s\n")
    jobs = [j for j in slurm.jobs() if j.get("JobId") not in seen_before]
    return cluster_wd, local, jobs, profile


def test_few_grouped_jobs_and_gpus_for_training_only(slurm_study):
    _, _, jobs, _ = slurm_study
    assert jobs and all(j["JobState"] == "COMPLETED" for j in jobs), [(j.get("Comment"), j["JobState"]) for j in jobs]
    rules = [_rule_of(j) for j in jobs]
    assert rules.count("train") == N_RUNS
    # one SLURM job per run holds all its features jobs + its metrics job (group `evaluate`)
    assert rules.count("evaluate_features_metrics") == N_RUNS, rules
    assert "features" not in rules and "metrics" not in rules
    # + 1 dataset + the aggregation (combine_metrics joins the group `figures` in the profile)
    assert len(jobs) == 1 + N_RUNS + N_RUNS + 1, rules
    for j in jobs:
        gpu_request = "gpu" in (j.get("TresPerJob", "") + j.get("TresPerNode", ""))
        if _rule_of(j) == "train":
            assert gpu_request and j["Partition"] == "gpu", j
        else:
            assert not gpu_request and j["Partition"] == "cpu", j
        # every job carries a time limit and a memory request from the rules/profile
        assert j["TimeLimit"] not in ("UNLIMITED", "") and j.get("MinMemoryNode", "0") not in ("0", ""), j


def test_metrics_equal_local_run(slurm_study):
    import numpy as np
    import xarray as xr

    cluster_wd, local, _, _ = slurm_study
    a = xr.open_dataset(cluster_wd / TARGET, engine="netcdf4").load()
    b = xr.open_dataset(local / TARGET, engine="netcdf4").load()
    assert set(a.data_vars) == set(b.data_vars) and "gnc1" in a
    # something was computed: every run has finite GNC1 at every checkpoint
    assert np.isfinite(a["gnc1"].values).sum() == N_RUNS * len(TINY_CONFIG["train"]["checkpoints"])
    # values and coordinates equal (attrs differ: host, time); training on CPU is deterministic
    xr.testing.assert_allclose(a, b, rtol=1e-9, atol=0)


def test_rerun_through_slurm_has_nothing_to_do(slurm, slurm_study):
    """A second run submits nothing (and returns: no status query is left waiting)."""
    cluster_wd, _, _, profile = slurm_study
    before = len(slurm.jobs())
    proc = run_snakemake(cluster_wd, ["--workflow-profile", str(profile), TARGET], env=slurm.env,
                         timeout=120, cluster=slurm)
    assert "Nothing to be done" in proc.stdout
    assert len(slurm.jobs()) == before


def test_sacct_is_unusable_without_accounting(slurm):
    """Why the profile sets `slurm-status-command: squeue`: on a cluster without slurmdbd, sacct (the
    plugin's default whenever the binary exists) fails, while squeue lists finished jobs."""
    jid = slurm.run("sbatch", "--parsable", "--mem", "100", "-t", "1", "--wrap", "true").stdout.strip()
    assert slurm.run("sacct", "-X", "-n", "-j", jid, check=False).returncode != 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = slurm.run("squeue", "-h", "-t", "all", "-j", jid, "-o", "%T", check=False).stdout.strip()
        if state == "COMPLETED":
            break
        time.sleep(0.5)
    assert state == "COMPLETED"


@pytest.mark.slow
def test_default_sacct_status_hangs_where_squeue_finishes(slurm, tmp_path):
    """The trap itself, on a one-job workflow: with the plugin's default status command (sacct here)
    Snakemake never notices that the job finished; with squeue it does."""
    (tmp_path / "Snakefile").write_text("rule a:\n    output: 'a.txt'\n    resources: mem_mb=100, runtime=1\n"
                                        "    shell: 'echo done > {output}'\n")
    base = [sys.executable, "-m", "snakemake", "--executor", "slurm", "--jobs", "1", "--workflow-profile", "none",
            "--slurm-no-account", "--seconds-between-status-checks", "2",
            "--slurm-init-seconds-before-status-checks", "2"]

    def attempt(extra, timeout):
        p = subprocess.Popen(base + extra, cwd=tmp_path, env=slurm.env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return None

    assert attempt(["--slurm-status-command", "sacct"], timeout=45) is None  # still waiting
    assert (tmp_path / "a.txt").exists()                                     # although the job is done
    (tmp_path / "a.txt").unlink()
    slurm.run("scancel", "--full", "-u", "root", check=False)
    shutil.rmtree(tmp_path / ".snakemake", ignore_errors=True)  # forget the killed run's job ids
    assert attempt(["--slurm-status-command", "squeue"], timeout=120) == 0
    assert (tmp_path / "a.txt").read_text().strip() == "done"


@pytest.mark.slow
def test_whole_tiny_study_through_slurm(slurm, tmp_path):
    """Every rule through the cluster profile: codes and figures groups included (~4 min on 2 cores)."""
    wd = tmp_path / "study"
    wd.mkdir()
    (wd / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    profile = ci_profile(tmp_path / "profiles" / "slurm-ci", slurm.cpus)
    seen_before = {j.get("JobId") for j in slurm.jobs()}
    run_snakemake(wd, ["--workflow-profile", str(profile)], env=slurm.env, timeout=900, cluster=slurm)
    jobs = [j for j in slurm.jobs() if j.get("JobId") not in seen_before]
    rules = sorted(_rule_of(j) for j in jobs)
    assert all(j["JobState"] == "COMPLETED" for j in jobs), rules
    assert rules.count("train") == N_RUNS and rules.count("evaluate_features_metrics") == N_RUNS
    assert sum(r.startswith("codes_") for r in rules) >= 1
    assert sum(r.startswith("figures_") for r in rules) == 1, rules  # aggregation + every figure
    for name in ("study.nc", "codes.nc", "figures/codes.png", "figures/sphere.png"):
        assert (wd / "results" / name).stat().st_size > 0, name
