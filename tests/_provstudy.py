"""A tiny real study shared by tests/test_provenance*.py and tests/test_reruns*.py.

The whole workflow (Snakefile, workflow/, config/) is copied into a temporary directory and run there,
so a test may edit a copied script without touching the repository. The study is built once per test
session (``get_study``): two prepared datasets (digits and a sub-sampled digits_b), one run on each,
2 epochs, width 8, one (d, K) = (2, 4) for the codes, and only the targets in ``TARGETS`` (the study
catalog plus one figure fed by metrics + codes and one fed by features) to keep it under a minute.
"""
from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

CONFIG = {
    "datasets": {
        "digits": {"source": "digits"},
        "digits_b": {"source": "digits", "max_per_class": 60},
    },
    "train": {"epochs": 2, "checkpoints": [0, 2], "batch_size": 64, "lr": 0.05, "width": 8},
    "experiments": {
        "a": {"dataset": "digits", "arch": ["smallcnn"], "tau": [0.1], "d": [2], "K": [4], "seed": [0]},
        "b": {"dataset": "digits_b", "arch": ["smallcnn"], "tau": [0.1], "d": [2], "K": [4], "seed": [0]},
    },
    "metrics": {"pinv_rtol": 1.0e-10},
    "codes": {"restarts": 2, "time_budget": 3, "ufm_tau": [1.0, 0.1], "ufm_steps": 100, "ufm_n": 3},
}

RUN_A = "digits/normalized-ce/smallcnn/tau0.1-d2-K4-s0"
RUN_B = "digits_b/normalized-ce/smallcnn/tau0.1-d2-K4-s0"

TARGETS = ["results/study.nc", "results/figures/codes.png", "results/figures/sphere.png",
           "results/figures/index.rst"]

_CACHE: dict[str, Path] = {}


def config() -> dict:
    return copy.deepcopy(CONFIG)


def copy_workflow(dst: Path) -> Path:
    """Copy the workflow (Snakefile, workflow/, config/, profiles/, envs/) into ``dst``; returns dst/Snakefile.
    (envs/ too: Snakemake reads every rule's `conda:` file when it records a finished job.)"""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "Snakefile", dst / "Snakefile")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "workflow", dst / "workflow", ignore=ignore)
    for folder in ("config", "profiles", "envs"):  # profiles/default: the workflow profile Snakemake picks up
        if (ROOT / folder).is_dir():
            shutil.copytree(ROOT / folder, dst / folder, ignore=ignore)
    return dst / "Snakefile"


def write_config(wd: Path, cfg: dict, name: str = "config.yaml") -> Path:
    path = wd / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=True))
    return path


def snakemake(wd: Path, *args: str, configfile: str = "config.yaml", check: bool = True,
              timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(wd / "Snakefile"), "--directory", str(wd),
           "--configfile", str(wd / configfile), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=wd)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


# ------------------------------------------------------------------------------------- dry runs

_JOB_HEAD = re.compile(r"^(?:local)?(?:rule|checkpoint) (\S+):\s*$")


def parse_dry_run(text: str) -> tuple[Counter, list[dict]]:
    """(job count table, job blocks) of ``snakemake -n`` output. The table is the "job  count" rows of
    the Job stats; each job block is {rule, output: [...], wildcards: {...}, reason}."""
    counts: Counter = Counter()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^job\s+count\s*$", line.strip()):
            for row in lines[i + 2:]:
                parts = row.split()
                if len(parts) != 2 or parts[0] == "total":
                    break
                counts[parts[0]] = int(parts[1])
            break
    jobs: list[dict] = []
    cur, indent = None, 0
    for line in lines:
        stripped = line.lstrip()
        m = _JOB_HEAD.match(stripped)
        if m:  # a job; inside a "Group job ..." block the job blocks are indented by 4 more spaces
            cur, indent = {"rule": m.group(1), "output": [], "wildcards": {}, "reason": ""}, len(line) - len(stripped)
            jobs.append(cur)
            continue
        if cur is None or not stripped:
            continue
        if len(line) - len(stripped) <= indent:
            cur = None
            continue
        key, _, value = stripped.partition(": ")
        if key == "output":
            cur["output"] = [v.strip() for v in value.split(",")]
        elif key == "wildcards":
            cur["wildcards"] = dict(kv.split("=", 1) for kv in value.split(", ") if "=" in kv)
        elif key == "reason":
            cur["reason"] = value
    return counts, jobs


def dry_run(wd: Path, cfg: dict | None = None, targets=TARGETS) -> tuple[Counter, list[dict], str]:
    """Dry run of ``targets`` with ``cfg`` (default: the study's config.yaml)."""
    configfile = "config.yaml"
    if cfg is not None:
        configfile = "config.changed.yaml"
        write_config(wd, cfg, configfile)
    # the profiles' `quiet: [rules, host]` hides the per-job blocks parsed here; a command-line
    # `--quiet` replaces the profile's, and `host` alone hides only the header (last: it takes several values)
    proc = snakemake(wd, "-n", "--cores", "1", *targets, "--quiet", "host", configfile=configfile)
    out = proc.stdout + proc.stderr
    counts, jobs = parse_dry_run(out)
    assert sum(counts.values()) == len(jobs), out[-3000:]
    return counts, jobs, out


def job_keys(jobs: list[dict]) -> set[tuple[str, str]]:
    """(rule, run id or "" or epoch-qualified run id) for each job, to compare exact job sets."""
    keys = set()
    for j in jobs:
        wc = j["wildcards"]
        if "run" in wc:
            ident = wc["run"] + (f"@{wc['epoch']}" if "epoch" in wc else "")
        elif "name" in wc:
            ident = f"{wc['name']}/{wc.get('version', '')}"
        elif "d" in wc:
            ident = (f"{wc['problem']}/" if "problem" in wc else "") + f"d{wc['d']}-K{wc['K']}"
        else:
            ident = ""
        keys.add((j["rule"], ident))
    return keys


# ------------------------------------------------------------------------------------- the study

def get_study(tmp_path_factory) -> Path:
    """Build the tiny study once per session; returns its working directory. (Developers may set
    $GNC_PROVSTUDY_DIR to a directory where it was built before, to skip the build.)"""
    if "error" in _CACHE:
        raise AssertionError(f"the shared tiny study failed to build: {_CACHE['error']}")
    if "wd" not in _CACHE:
        reuse = os.environ.get("GNC_PROVSTUDY_DIR")
        if reuse and (Path(reuse) / "results" / "study.nc").is_file():
            _CACHE["wd"] = Path(reuse)
            return _CACHE["wd"]
        wd = tmp_path_factory.mktemp("provstudy")
        try:
            copy_workflow(wd)
            write_config(wd, CONFIG)
            snakemake(wd, "--cores", "2", *TARGETS)
        except BaseException as exc:
            _CACHE["error"] = str(exc)[-3000:]
            raise
        _CACHE["wd"] = wd
    return _CACHE["wd"]
