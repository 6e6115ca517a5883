# Grid expansion, run ids and path builders. The study is validated here, before any job runs.
import functools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))  # the gnc package, also without pip -e

from gnc.config import SKIPPED, ConfigError, code_grid, fmt_num, load_study
from gnc import data as gnc_data
from gnc.fingerprint import code_param as _code_param, use_cache as _fingerprint_cache

try:
    config, RUNS = load_study(config)
except ConfigError as _err:
    sys.stderr.write(f"\ngnc-study: {_err}\n\n")
    raise SystemExit(1)
for _name, _why in SKIPPED.items():
    sys.stderr.write(f"gnc-study: note: dataset {_name!r}: {_why}\n")

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
