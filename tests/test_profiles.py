"""The execution profiles (profiles/*/config.yaml): valid for Snakemake, consistent with the rules,
GPUs only where intended, and the profile-layering trap the README warns about.

Fast (dry-runs only); the real cluster run is tests/test_slurm.py.
"""
from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TINY_CONFIG

PROFILES = ROOT / "profiles"
NAMES = ("default", "local", "local-gpu", "slurm")
GPU_KEYS = {"gpu", "gpu_model", "gpu_manufacturer", "gres", "cpus_per_gpu", "tasks_per_gpu"}
N_RUNS = sum(len(e["arch"]) * len(e["tau"]) * len(e["d"]) * len(e["K"]) * len(e["seed"])
             for e in TINY_CONFIG["experiments"].values())


def load(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


def parse_args(argv: list[str], cwd: Path, monkeypatch):
    """Snakemake's own command-line + profile parsing, in-process."""
    from snakemake.cli import parse_args as smk_parse_args

    monkeypatch.chdir(cwd)
    return smk_parse_args(argv)[1]


def dry_run(tmp_path: Path, *args: str) -> str:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(tmp_path / "config.yaml"), *args]
    if "--quiet" not in args:  # the job blocks parsed below; the profiles' `quiet` hides them
        cmd += ["--quiet", "host"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout + p.stderr


def job_resources(out: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job in a dry-run listing, group members included."""
    jobs = []
    for m in re.finditer(r"^\s*(?:local)?rule (\w+):\n((?:\s+\w[\w ]*: .*\n)+)", out, re.M):
        res = re.search(r"^\s+resources: (.*)$", m.group(2), re.M)
        kv = dict(item.split("=", 1) for item in res.group(1).split(", ")) if res else {}
        jobs.append((m.group(1), kv))
    return jobs


@pytest.fixture(scope="module")
def rule_names():
    """Every rule of the workflow (from `snakemake --list-rules` on the default study, which draws every
    figure of the registry, so every figure rule exists)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules", "-s", str(ROOT / "Snakefile"),
                            "--directory", d], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    names = {line.strip() for line in p.stdout.splitlines() if re.fullmatch(r"\s*\w+\s*", line)}
    assert {"train", "features", "metrics"} <= names, names
    return names


@pytest.mark.parametrize("name", NAMES)
def test_profile_is_valid_for_snakemake(name, monkeypatch):
    args = parse_args(["--workflow-profile", str(PROFILES / name), "-n"], ROOT, monkeypatch)
    assert args.rerun_incomplete and args.show_failed_logs
    # a quiet console: no block per job, no header; failures are printed all the same (gnc.console)
    assert {q.item_to_choice() for q in args.quiet} == {"rules", "host"}
    assert parse_args(["--workflow-profile", str(PROFILES / name), "-n", "--quiet", "host"], ROOT,
                      monkeypatch).quiet == {type(next(iter(args.quiet))).HOST}  # the command line replaces it
    if name == "slurm":
        assert args.executor == "slurm"
        assert args.slurm_status_command == "squeue"  # sacct hangs silently without accounting
        assert int(args.slurm_init_seconds_before_status_checks) * 3 <= 300  # MinJobAge default 300 s
    else:
        assert args.executor in (None, "local")


def test_default_profile_is_portable():
    """profiles/default is merged into every `--profile` run: nothing site- or machine-specific."""
    prof = load("default")
    assert not {"default-resources", "set-resources", "resources", "executor", "cores", "jobs",
                "set-threads"} & set(prof), prof


def test_profiles_use_the_greedy_scheduler():
    for name in NAMES:
        assert load(name)["scheduler"] == "greedy", name  # see benchmarks/bench_dag.py


def test_gpu_requested_for_training_only():
    for name in NAMES:
        prof = load(name)
        for rule, res in (prof.get("set-resources") or {}).items():
            if rule != "train":
                assert not GPU_KEYS & set(res), (name, rule, res)
            assert not re.search(r"--(gres|gpus)\b", str(res.get("slurm_extra", ""))), (name, rule)
        assert not GPU_KEYS & set(prof.get("default-resources") or {}), name
    assert load("slurm")["set-resources"]["train"]["gpu"] == 1
    assert load("local-gpu")["set-resources"]["train"]["gpu"] == 1
    # `nvidia_gpu` is not turned into an sbatch request by the slurm plugin, yet srun asks for it
    for f in PROFILES.glob("*/config.yaml"):
        assert "nvidia_gpu" not in yaml.safe_dump(yaml.safe_load(f.read_text())), f  # comments aside
    for f in (ROOT / "workflow" / "rules").glob("*.smk"):
        assert not re.search(r"nvidia_gpu\s*=", f.read_text()), f


def test_profiles_name_existing_rules(rule_names):
    for name in NAMES:
        prof = load(name)
        named = set(prof.get("set-resources") or {}) | set(prof.get("set-threads") or {}) | set(
            prof.get("groups") or {})
        assert named <= rule_names, (name, named - rule_names)


def test_grouping_lives_in_the_slurm_profile(rule_names):
    """The rules declare no `group:`; the slurm profile groups every rule but the dataset preparation
    and training (each its own SLURM job), the target rule `all` and the local rule `figure_index`
    (it runs in the submitting process)."""
    for smk in [ROOT / "Snakefile", *(ROOT / "workflow" / "rules").glob("*.smk")]:
        assert not re.search(r"^\s+group:", smk.read_text(), re.M), smk.name
    assert set(load("slurm")["groups"]) == rule_names - {"all", "train", "prepare_dataset", "figure_index"}


def test_workflow_profile_does_not_merge_default(tmp_path, monkeypatch):
    """The trap the README documents: `--profile profiles/slurm` also loads profiles/default, which
    wins key by key, so default-resources there would replace the cluster's; `--workflow-profile`
    does not load profiles/default."""
    (tmp_path / "Snakefile").write_text("rule a:\n    output: 'a'\n    shell: 'touch a'\n")
    (tmp_path / "profiles" / "default").mkdir(parents=True)
    (tmp_path / "profiles" / "default" / "config.yaml").write_text("default-resources:\n  mem_mb: 1\n")
    shutil.copytree(PROFILES / "slurm", tmp_path / "profiles" / "slurm")
    merged = parse_args(["--profile", "profiles/slurm", "-n"], tmp_path, monkeypatch)
    assert merged.executor == "slurm"
    # the default profile's block replaced the slurm one as a whole: runtime is gone, mem_mb is 1
    assert "runtime" not in merged.default_resources and merged.default_resources["mem_mb"].value == 1
    alone = parse_args(["--workflow-profile", "profiles/slurm", "-n"], tmp_path, monkeypatch)
    for key, value in load("slurm")["default-resources"].items():
        assert alone.default_resources[key].value == value, key


def test_slurm_profile_groups_small_jobs(tmp_path):
    """Planned with the slurm profile, the tiny study becomes one job per dataset, per training, per
    run's evaluation (all checkpoints + metrics), per 8 code solves, plus one for all figures."""
    out = dry_run(tmp_path, "--workflow-profile", str(PROFILES / "slurm"))
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M)}
    groups = re.findall(r"Group job (\w+)", out)
    assert groups.count("evaluate") == N_RUNS
    assert groups.count("codes") == math.ceil((counts["solve_code"] + counts["ufm"]) / 8)
    assert groups.count("figures") == 1
    jobs = job_resources(out)
    assert {r for r, _ in jobs} >= {"train", "features", "metrics", "prepare_dataset"}
    for rule, res in jobs:
        assert "runtime" in res and "mem_mb" in res, (rule, res)
        assert (res.get("gpu") == "1") == (rule == "train"), (rule, res)


def test_local_gpu_profile_gives_training_a_gpu(tmp_path):
    out = dry_run(tmp_path, "--workflow-profile", str(PROFILES / "local-gpu"))
    jobs = job_resources(out)
    assert [res.get("gpu") for r, res in jobs if r == "train"] == ["1"] * N_RUNS
    assert all(res.get("gpu", "0") == "0" for r, res in jobs if r != "train")


def test_every_rule_declares_its_resources(tmp_path):
    """threads, mem_mb and runtime come from the rules themselves (profiles only adjust them)."""
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^\s*(?:rule|checkpoint)\b", smk.read_text(), flags=re.M)[1:]:
            if re.search(r"^\s+(script|shell|run|notebook):", block, re.M):
                assert re.search(r"^\s+threads:", block, re.M), (smk.name, block[:80])
    # dry-run without any profile or default resources: every job but `all` has explicit values
    out = dry_run(tmp_path, "--workflow-profile", "none", "--default-resources", "tmpdir=system_tmpdir")
    jobs = job_resources(out)
    assert len(jobs) > 10
    for rule, res in jobs:
        if rule == "all":
            continue
        assert res.get("mem_mb", "<TBD>").isdigit() and res.get("runtime", "").isdigit(), (rule, res)
        assert ("gpu" in res) == (rule == "train"), (rule, res)  # training states its GPU need
