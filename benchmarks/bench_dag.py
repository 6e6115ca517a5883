"""How long Snakemake takes to plan the study, and what scheduling costs when jobs are tiny.

Part 1 — DAG: wall time of `snakemake -n` (build the DAG + dry-run, one process, as a user types it)
for the tiny test config (baseline), config/paper.yaml, and a full-factorial paper-sized grid
generated here (ResNet18/DenseNet121/ResNeXt50 x tau {1,1/5,1/6,1/7,1/10} x d {10,20,30} x
K {100 (CIFAR-100), 200 (Tiny-ImageNet)} x 3 seeds, checkpoints every 10 of 200 epochs). Each is
also planned with `--workflow-profile profiles/slurm` (job groups) to count SLURM submissions.
Target: the paper grid plans in < 10 s.

Part 2 — scheduler: a throwaway workflow of N trivial jobs (all ready at once, the worst case for
the ILP scheduler) executed with --cores 2 under `--scheduler ilp` (Snakemake's default),
`--scheduler greedy`, and ilp with `--scheduler-subsample 100`.

    .venv/bin/python benchmarks/bench_dag.py            # full (about 6-10 min on 2 cores)
    .venv/bin/python benchmarks/bench_dag.py --quick    # smaller N, one repetition
    .venv/bin/python benchmarks/bench_dag.py --no-sched # part 1 only

The last lines are ratios against the baselines measured in the same run.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
PY = sys.executable


def tiny_config() -> dict:
    from conftest import TINY_CONFIG  # the test suite's tiny study

    return TINY_CONFIG


def paper_grid_config(seeds=(0, 1, 2)) -> dict:
    """The paper's full factorial grid (more runs than config/paper.yaml, which picks slices)."""
    common = dict(arch=["resnet18", "densenet121", "resnext50"],
                  tau=[1.0, 0.2, 0.16666667, 0.14285714, 0.1], d=[10, 20, 30], seed=list(seeds))
    return {
        "results": "results-grid",
        "datasets": {"cifar100": {"source": "cifar100", "download": True},
                     "tiny_imagenet": {"source": "tiny_imagenet", "download": True}},
        "train": {"epochs": 200, "checkpoints": list(range(0, 201, 10)), "batch_size": 500, "lr": 0.1,
                  "width": 64},
        "experiments": {"grid_cifar100": {"dataset": "cifar100", "K": [100], **common},
                        "grid_tiny": {"dataset": "tiny_imagenet", "K": [200], **common}},
        "metrics": {"keep_features": False},
        "codes": {"restarts": 64, "time_budget": 600},
    }


def dry_run(configfile: Path, workdir: Path, profile: str = "none", reps: int = 3) -> dict:
    cmd = [PY, "-m", "snakemake", "-n", "--cores", "2", "-s", str(ROOT / "Snakefile"),
           "--configfile", str(configfile), "--directory", str(workdir), "--workflow-profile", profile]
    best, out = float("inf"), ""
    for _ in range(reps):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit(f"dry-run failed ({configfile}):\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
        best, out = min(best, dt), p.stdout + p.stderr
    m = re.search(r"^total\s+(\d+)", out, re.M)
    jobs = int(m.group(1)) if m else -1
    # SLURM submissions: ungrouped jobs (rule lines at column 0, except `all`) + group jobs
    single = len(re.findall(r"^\[[^\]]+\]\n(?:local)?rule (?!all:)\w+:", out, re.M))
    groups = len(re.findall(r"Group job \w+", out))
    return {"seconds": best, "jobs": jobs, "submissions": single + groups, "groups": groups}


SYNTH = """
N = int(config["n_jobs"])
rule all:
    input: "agg.txt"
rule tiny:
    output: "t/{i}.txt"
    resources: mem_mb=10, runtime=1
    shell: "echo {wildcards.i} > {output}"
rule agg:
    input: expand("t/{i}.txt", i=range(N))
    output: "agg.txt"
    shell: "cat {input} | wc -l > {output}"
"""


def run_synthetic(n: int, extra: list[str], tmp: Path) -> float:
    wd = Path(tempfile.mkdtemp(dir=tmp))
    (wd / "Snakefile").write_text(SYNTH)
    cmd = [PY, "-m", "snakemake", "--cores", "2", "-q", "--config", f"n_jobs={n}", "--workflow-profile", "none",
           *extra]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=wd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0 or int((wd / "agg.txt").read_text()) != n:
        raise SystemExit(f"synthetic run failed: {p.stderr[-3000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-sched", action="store_true")
    ap.add_argument("--sizes", default=None, help="synthetic job counts, e.g. 500,2000")
    a = ap.parse_args()
    reps = 1 if a.quick else 3
    ratios = []
    with tempfile.TemporaryDirectory(prefix="bench_dag_") as tmps:
        tmp = Path(tmps)
        configs = {"tiny (baseline)": tiny_config()}
        if (ROOT / "config" / "paper.yaml").exists():
            configs["config/paper.yaml"] = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
        configs["paper grid (full factorial)"] = paper_grid_config()
        rows = {}
        print("== Part 1: planning (snakemake -n, best of %d) ==" % reps)
        print(f"{'config':30s} {'profile':10s} {'jobs':>6s} {'SLURM jobs':>10s} {'seconds':>8s} {'ms/job':>7s}")
        for name, cfg in configs.items():
            cf = tmp / (re.sub(r"\W+", "_", name) + ".yaml")
            cf.write_text(yaml.safe_dump(cfg))
            for profile in ("none", "profiles/slurm"):
                r = dry_run(cf, tmp / "wd", profile, reps)
                rows[(name, profile)] = r
                sub = r["submissions"] if profile != "none" else r["jobs"] - 1
                print(f"{name:30s} {profile.split('/')[-1]:10s} {r['jobs']:6d} {sub:10d} {r['seconds']:8.2f} "
                      f"{1000 * r['seconds'] / max(r['jobs'], 1):7.2f}", flush=True)
        base = rows[("tiny (baseline)", "none")]
        for name in configs:
            if name.startswith("tiny"):
                continue
            r, rs = rows[(name, "none")], rows[(name, "profiles/slurm")]
            ratios.append(f"{name}: dry-run {r['seconds']:.2f} s / tiny {base['seconds']:.2f} s = "
                          f"{r['seconds'] / base['seconds']:.2f}x for {r['jobs']} / {base['jobs']} jobs; "
                          f"budget 10 s -> {r['seconds'] / 10:.2f} of it")
            ratios.append(f"{name}: SLURM submissions with profiles/slurm {rs['submissions']} of {r['jobs'] - 1} "
                          f"jobs = {rs['submissions'] / max(r['jobs'] - 1, 1):.3f}")

        if not a.no_sched:
            sizes = [int(s) for s in a.sizes.split(",")] if a.sizes else ([300, 1000] if a.quick else [500, 2000])
            print("\n== Part 2: executing N trivial jobs, --cores 2 ==")
            print(f"{'N':>6s} {'scheduler':24s} {'seconds':>8s} {'ms/job':>7s}")
            variants = {"ilp (default)": ["--scheduler", "ilp"], "greedy": ["--scheduler", "greedy"],
                        "ilp + subsample 100": ["--scheduler", "ilp", "--scheduler-subsample", "100"]}
            for n in sizes:
                res = {}
                for vname, extra in variants.items():
                    res[vname] = run_synthetic(n, extra, tmp)
                    print(f"{n:6d} {vname:24s} {res[vname]:8.1f} {1000 * res[vname] / n:7.1f}", flush=True)
                ratios.append(f"N={n}: ilp / greedy = {res['ilp (default)'] / res['greedy']:.2f}x, "
                              f"ilp+subsample / greedy = {res['ilp + subsample 100'] / res['greedy']:.2f}x")
    print("\n== ratios ==")
    for line in ratios:
        print(line)


if __name__ == "__main__":
    main()
