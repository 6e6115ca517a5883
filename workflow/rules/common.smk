# Grid expansion, run ids and path builders. The study is validated here, before any job runs.
import functools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))  # the gnc package, also without pip -e

from gnc.config import STUDY_FILE_KEY, ConfigError, code_grid, fmt_num, load_study, merge_over_default
from gnc import data as gnc_data
from gnc.fingerprint import code_param as _code_param, use_cache as _fingerprint_cache

# The default study is config.yaml in the working directory (else next to the Snakefile). A config from
# the command line that defines neither `datasets` nor `experiments` (`--config results=X`) is merged
# over it; one that does is a study of its own and replaces it.
_DEFAULT_CONFIG = Path("config.yaml") if Path("config.yaml").is_file() else Path(workflow.basedir) / "config.yaml"
try:
    _given = [f"{k}={config[k]}" if k == STUDY_FILE_KEY else k for k in sorted(config)]
    if merge_over_default(config, _DEFAULT_CONFIG) and _given and workflow.is_main_process:
        _note = f"gnc-study: {', '.join(_given)} from the command line, over the default study {_DEFAULT_CONFIG}"
        print(_note, file=sys.stderr)
    SKIPPED = {}  # optional datasets left out: name -> reason
    config, RUNS = load_study(config, SKIPPED)
except ConfigError as _err:
    sys.stderr.write(f"\ngnc-study: {_err}\n\n")
    raise SystemExit(1)

OUT = config["results"]
RES = config["resources"]
CODE_GRID = code_grid(config, RUNS)


wildcard_constraints:
    run=r"[^/]+/[^/]+/[^/]+/tau[^/]+-d\d+-K\d+-s\d+(-c[0-9a-f]+)?",
    epoch=r"\d+",
    d=r"\d+",
    K=r"\d+",
    name=r"[^/]+",
    version=r"v\d+-[0-9a-f]+",


@functools.lru_cache(maxsize=None)
def dataset_dir(name):
    return f"{RES}/datasets/{name}/{gnc_data.version_id(name, config['datasets'][name])}"


def dataset_manifest(name):
    return f"{dataset_dir(name)}/manifest.json"


def run_of(wildcards):
    return RUNS[wildcards.run]


def init_checkpoints_of(wildcards):
    """The checkpoint folder of the run this run starts from (recipe init_from), or nothing."""
    init = run_of(wildcards).init_run
    return [f"{run_dir(init)}/ckpt"] if init else []


def checkpoints_of(run_id):
    return RUNS[run_id].recipe["checkpoints"]


def run_dir(run_id):
    return f"{OUT}/runs/{run_id}"


def all_run_metrics():
    return [f"{run_dir(r)}/metrics.nc" for r in RUNS]


def all_histories():
    return [f"{run_dir(r)}/history.nc" for r in RUNS]


def final_features():
    """run id -> features file of the run's last checkpoint"""
    return {r: f"{run_dir(r)}/features/epoch={checkpoints_of(r)[-1]}.nc" for r in RUNS}


def final_features_at(wildcards):
    """Final-checkpoint features (with the classifier W) of the trained runs at this (d, K)."""
    d, K = int(wildcards.d), int(wildcards.K)
    return {r: p for r, p in final_features().items() if (RUNS[r].d, RUNS[r].K) == (d, K)}


# per-file analyses kept between runs (by content hash): `snakemake -n` re-reads only what changed
_fingerprint_cache(Path(".snakemake") / "gnc-code-analysis.json")


@functools.lru_cache(maxsize=None)
def _code_fingerprint(script, select):
    return _code_param(script, dict(select) or None)


def code_fingerprint(script, select=None):
    """``params: code=code_fingerprint("metrics")``: the fingerprint of what workflow/scripts/<script>.py
    runs (the script and the gnc definitions it reaches; comments and docstrings do not count), so a
    code change reruns exactly the jobs that run that code (gnc.fingerprint). ``select`` narrows a
    dispatch table to one entry, e.g. {"gnc.figures.FIGURES": kind}."""
    return _code_fingerprint(script, tuple(sorted((select or {}).items())))


def plan_summary():
    """Lines saying what this invocation will download (datasets not prepared yet whose raw files are
    missing, with download: true) and which optional datasets are skipped, and why."""
    lines = []
    total, unknown = 0, False
    for name, spec in config["datasets"].items():
        if Path(dataset_manifest(name)).is_file():
            continue
        plan = gnc_data.download_plan(name, spec)
        if plan is None:
            continue
        for url, size in plan["files"]:
            total += size or 0
            unknown |= size is None
            mib = f"{size / 2**20:,.0f} MiB" if size else "size not recorded"
            lines.append(f"  download {name}: {url} ({mib}) -> {plan['target']}")
    if lines:
        head = f"gnc-study: {len(lines)} download(s), {total / 2**30:.2f} GiB{' (some sizes not recorded)' if unknown else ''}:"
        lines.insert(0, head)
    for name, why in SKIPPED.items():
        lines.append(f"gnc-study: skipped optional dataset {name!r}: {why}")
    return lines


if workflow.is_main_process:
    for _line in plan_summary():
        print(_line, file=sys.stderr)
