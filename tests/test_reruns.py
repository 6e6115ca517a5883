"""Only changed work reruns: real Snakemake dry runs (``snakemake -n``) against a finished tiny study.

Each test changes one thing (config option, grid, dataset option, figure script), dry-runs the study's
targets and asserts the exact set of jobs (rule + run / dataset / (d, K)) from the printed job blocks,
cross-checked with the "job  count" table. Snakemake 9's default rerun triggers (code, input, mtime,
params, software-env) decide; the expected sets below follow from the DAG, not from our code.
"""
import os
from collections import Counter

import pytest

import _provstudy as S


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return S.get_study(tmp_path_factory)


def run_jobs(run):
    """The jobs of one training run: train, features of each checkpoint (epochs 0 and 2), metrics."""
    return {("train", run), ("features", f"{run}@0"), ("features", f"{run}@2"), ("metrics", run)}


AGGREGATE = {("combine_metrics", ""), ("compare_codes", ""), ("study", "")}
FIGURES = {("figure_codes", ""), ("figure_sphere", "")}


def check(study, cfg, expected, **kw):
    counts, jobs, out = S.dry_run(study, cfg, **kw)
    keys = S.job_keys(jobs)
    assert keys == expected, (f"unexpected: {sorted(keys - expected)}\nmissing: {sorted(expected - keys)}\n"
                              f"{out[-4000:]}")
    assert counts == Counter(rule for rule, _ in expected), counts
    return jobs


def reasons(jobs, rule):
    return [j["reason"] for j in jobs if j["rule"] == rule]


def test_parse_dry_run_table():
    text = """Building DAG of jobs...
[Mon Nov 23 11:54:39 2026]
rule train:
    input: resources/datasets/digits/v1-abc/manifest.json
    output: results/runs/a/ckpt, results/runs/a/history.nc
    jobid: 3
    reason: Params have changed since last execution
    wildcards: run=digits/normalized-ce/smallcnn/tau0.1-d2-K4-s0
    resources: tmpdir=/tmp
[Mon Nov 23 11:54:39 2026] Group job figures (jobs in lexicogr. order):

    [Mon Nov 23 11:54:39 2026]
    rule figure_sphere:
        input: results/runs/a/features/epoch=2.nc
        output: results/figures/sphere.png
        reason: Code has changed since last execution
[Mon Nov 23 11:54:39 2026]
localrule all:
    input: results/study.nc
    jobid: 0
Job stats:
job              count
-------------  -------
train                1
figure_sphere        1
all                  1
total                3
"""
    counts, jobs = S.parse_dry_run(text)
    assert counts == Counter({"train": 1, "figure_sphere": 1, "all": 1})
    assert [j["rule"] for j in jobs] == ["train", "figure_sphere", "all"]
    assert jobs[1]["reason"] == "Code has changed since last execution"
    assert jobs[0]["wildcards"] == {"run": "digits/normalized-ce/smallcnn/tau0.1-d2-K4-s0"}
    assert jobs[0]["output"] == ["results/runs/a/ckpt", "results/runs/a/history.nc"]
    assert S.job_keys(jobs) == {("train", "digits/normalized-ce/smallcnn/tau0.1-d2-K4-s0"), ("figure_sphere", ""),
                                ("all", "")}


#: the refine step of the codes reads the final classifiers of the trained runs at (2, 4)
REFINE = ("refine_code", "d2-K4")


def test_nothing_changed_nothing_reruns(study):
    counts, jobs, out = S.dry_run(study)
    assert jobs == [] and not counts
    assert "Nothing to be done" in out


def test_new_tau_value_schedules_only_the_new_run(study):
    cfg = S.config()
    cfg["experiments"]["a"]["tau"] = [0.1, 0.2]
    new = "digits/normalized-ce/smallcnn/tau0.2-d2-K4-s0"
    # same (d, K): no new code solves; the sphere figure keeps showing its run (the smallest τ), and
    # the index of figures changes (two temperatures: the temperature sweep can now be drawn)
    check(study, cfg, run_jobs(new) | AGGREGATE | {("figure_codes", ""), ("figure_index", ""), REFINE})


def test_metric_option_reruns_metrics_and_figures_not_training(study):
    cfg = S.config()
    cfg["metrics"]["pinv_rtol"] = 1.0e-8
    jobs = check(study, cfg, {("metrics", S.RUN_A), ("metrics", S.RUN_B)} | AGGREGATE | {("figure_codes", "")})
    assert all("Params have changed" in r for r in reasons(jobs, "metrics"))


def test_training_hyperparameter_reruns_that_run_only(study):
    cfg = S.config()
    cfg["experiments"]["b"]["train"] = {"lr": 0.02}
    # the sphere figure shows run A (the headline run of d = 2): it stays
    jobs = check(study, cfg, run_jobs(S.RUN_B) | AGGREGATE | {("figure_codes", ""), REFINE})
    assert "Params have changed" in reasons(jobs, "train")[0]


def test_dataset_option_makes_a_new_version_and_reruns_its_branch_only(study):
    from gnc import data as gd

    cfg = S.config()
    old = gd.version_id("digits_b", cfg["datasets"]["digits_b"])
    cfg["datasets"]["digits_b"]["max_per_class"] = 50
    new = gd.version_id("digits_b", cfg["datasets"]["digits_b"])
    assert new != old
    jobs = check(study, cfg, {("prepare_dataset", f"digits_b/{new}")} | run_jobs(S.RUN_B) | AGGREGATE
                 | {("figure_codes", ""), REFINE})
    assert "Set of input files has changed" in reasons(jobs, "train")[0]
    # the previous version stays where it was (results made from it remain verifiable)
    assert (study / "resources" / "datasets" / "digits_b" / old / "manifest.json").is_file()
    # a source option of the other dataset: only its branch
    cfg = S.config()
    cfg["datasets"]["digits"]["split_seed"] = 1
    new_a = gd.version_id("digits", cfg["datasets"]["digits"])
    check(study, cfg, {("prepare_dataset", f"digits/{new_a}")} | run_jobs(S.RUN_A) | AGGREGATE | FIGURES | {REFINE})


def test_editing_a_figure_script_reruns_only_figures(study):
    script = study / "workflow" / "scripts" / "figure.py"  # the test's own copy of the workflow
    original, st = script.read_text(), script.stat()
    try:
        # a change of the code (a comment alone reruns nothing: tests/test_fingerprint.py); the rules'
        # `code` param carries the fingerprint of the script and the gnc code it reaches
        script.write_text(original + "\n_edited_by_test_reruns = True\n")
        jobs = check(study, None, FIGURES)
        assert all("Params have changed" in j["reason"] for j in jobs)
    finally:
        script.write_text(original)
        os.utime(script, ns=(st.st_atime_ns, st.st_mtime_ns))
    counts, jobs, _ = S.dry_run(study)
    assert jobs == []


def test_figure_option_reruns_only_figures(study):
    cfg = S.config()
    cfg["figures"] = {"dpi": 100}
    check(study, cfg, FIGURES)


@pytest.mark.parametrize("key,value,expected", [
    ("ufm_steps", 50, {("ufm", "d2-K4")}),
    ("restarts", 3, {("solve_code", "tammes/d2-K4"), ("solve_code", "softmax/d2-K4"), ("refine_code", "d2-K4"),
                     ("ufm", "d2-K4")}),
])
def test_codes_option_reruns_only_the_solves_that_use_it(study, key, value, expected):
    cfg = S.config()
    cfg["codes"][key] = value
    check(study, cfg, expected | {("compare_codes", ""), ("study", ""), ("figure_codes", "")})


def test_a_dataset_no_experiment_uses_reruns_nothing(study):
    cfg = S.config()
    cfg["datasets"]["spare"] = {"source": "digits", "split_seed": 3}
    counts, jobs, out = S.dry_run(study, cfg)
    assert jobs == [], out[-3000:]
