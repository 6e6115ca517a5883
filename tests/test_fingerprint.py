"""Code is part of the data: gnc.fingerprint, the rules' ``code`` params and ``gnc-provenance --stale``.

The first half tests the static analysis on a small synthetic package (what counts, what does not)
and on the real scripts (which stage reaches which code; cross-checked with the modules Python really
loads). The second half drives the real ``snakemake -n`` on a "fresh clone" of the tiny study of
tests/_provstudy.py: the workflow copied anew (new modification times, scripts newer than every
result), the results and Snakemake's metadata copied with their times. Nothing is trained here
beyond the shared study; every check is a dry run.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

import _provstudy as S
from conftest import ROOT
from gnc import fingerprint as FP
from gnc import provenance as P
from gnc.provenance.__main__ import main as provenance_cli


# ------------------------------------------------------------------------------ synthetic package

def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return root


PKG = {
    "gnc/__init__.py": '"""pkg"""\n',
    "gnc/util.py": '''
        """Utilities."""
        import math

        SCALE = 2


        def double(x):
            """Twice x."""
            return SCALE * x


        def unused(x):
            return x - 1
        ''',
    "gnc/stage/__init__.py": '''
        from .core import run, RUNNERS
        ''',
    "gnc/stage/core.py": '''
        from .. import util


        def helper(x):
            return x + 1


        def run(x):
            from ..late import late_value  # function-local import
            return util.double(helper(x)) + late_value()


        def other(x):
            return x


        RUNNERS = {"a": helper, "b": other}
        ''',
    "gnc/late.py": '''
        def late_value():
            return 3
        ''',
    "gnc/data/table.csv": "a,b\n1,2\n",
    "scripts/job.py": '''
        """A job."""
        from gnc.stage import run

        print(run(1))
        ''',
    "scripts/dispatch.py": '''
        import gnc.stage.core as core

        print(core.RUNNERS["a"](1))
        ''',
    "scripts/data.py": '''
        from gnc import data_user

        print(data_user.read())
        ''',
    "gnc/data_user.py": '''
        def read():
            return 1
        ''',
}


@pytest.fixture
def pkg(tmp_path):
    root = write_tree(tmp_path / "wf", PKG)
    FP.use_cache(None)
    return root


def fp(root, script="job", select=None):
    return FP.fingerprint(script, select, root)


def edit(root: Path, rel: str, old: str, new: str) -> None:
    p = root / rel
    text = p.read_text()
    assert old in text, (rel, old)
    p.write_text(text.replace(old, new, 1))


def test_closure_follows_imports_reexports_attributes_and_local_imports(pkg):
    got = FP.explain("job", root=pkg)
    assert got["gnc.stage.core"] == ["helper", "run", "util"]
    assert got["gnc.util"] == ["SCALE", "double"]          # not `unused`, not the `math` import
    assert got["gnc.late"] == ["late_value"]              # reached through a function-local import
    assert "gnc.data_user" not in got


@pytest.mark.parametrize("rel,old,new", [
    ("gnc/util.py", "return SCALE * x", "return SCALE * x  # a comment"),
    ("gnc/util.py", '"""Twice x."""', '"""Two times x, documented differently."""'),
    ("gnc/util.py", '"""Utilities."""', '"""Other module text."""'),
    ("gnc/util.py", "def double(x):", "def double(\n    x,\n):"),
    ("gnc/util.py", "SCALE = 2\n", "SCALE = (2)\n\n\n"),
    ("gnc/util.py", "return x - 1", "return x - 2"),              # a function the job does not reach
    ("gnc/stage/core.py", 'RUNNERS = {"a": helper, "b": other}', 'RUNNERS = {"a": helper, "b": other, "c": other}'),
    ("scripts/job.py", '"""A job."""', "# a job\n"),
])
def test_cosmetic_or_unreached_changes_keep_the_fingerprint(pkg, rel, old, new):
    before = fp(pkg)
    edit(pkg, rel, old, new)
    assert fp(pkg) == before


@pytest.mark.parametrize("rel,old,new", [
    ("gnc/util.py", "SCALE = 2", "SCALE = 3"),
    ("gnc/util.py", "return SCALE * x", "return x * SCALE"),
    ("gnc/late.py", "return 3", "return 4"),                      # only reached inside a function
    ("gnc/stage/core.py", "return x + 1", "return x + 2"),
    ("gnc/stage/__init__.py", "from .core import run, RUNNERS", "from .core import run, RUNNERS\nprint(1)"),
    ("scripts/job.py", "print(run(1))", "print(run(2))"),
])
def test_semantic_changes_change_the_fingerprint(pkg, rel, old, new):
    before = fp(pkg)
    edit(pkg, rel, old, new)
    assert fp(pkg) != before


def test_dispatch_table_selection_counts_only_the_selected_entry(pkg):
    a, b = fp(pkg, "dispatch", {"gnc.stage.core.RUNNERS": "a"}), fp(pkg, "dispatch", {"gnc.stage.core.RUNNERS": "b"})
    whole = fp(pkg, "dispatch")
    assert len({a, b, whole}) == 3
    edit(pkg, "gnc/stage/core.py", "def other(x):\n    return x", "def other(x):\n    return -x")
    assert fp(pkg, "dispatch", {"gnc.stage.core.RUNNERS": "a"}) == a
    assert fp(pkg, "dispatch", {"gnc.stage.core.RUNNERS": "b"}) != b
    assert fp(pkg, "dispatch") != whole
    with pytest.raises(FP.FingerprintError, match="no entry 'zz'"):
        fp(pkg, "dispatch", {"gnc.stage.core.RUNNERS": "zz"})
    with pytest.raises(FP.FingerprintError, match="not reached"):
        fp(pkg, "job", {"gnc.util.NOPE": "a"})
    with pytest.raises(FP.FingerprintError, match="not a dict literal"):
        fp(pkg, "dispatch", {"gnc.stage.core.helper": "a"})


def test_package_data_files_count_by_bytes(pkg):
    before = fp(pkg, "data")
    assert any(k == ("gnc", "file:gnc/data/table.csv") for k in FP.closure(pkg / "scripts" / "data.py", root=pkg).items)
    (pkg / "gnc" / "data" / "table.csv").write_text("a,b\n1,3\n")
    assert fp(pkg, "data") != before


def test_bad_code_is_refused_by_name(pkg):
    (pkg / "gnc" / "late.py").write_text("def late_value(:\n")
    with pytest.raises(FP.FingerprintError, match="late.py: cannot fingerprint code that does not parse"):
        fp(pkg)
    with pytest.raises(FP.FingerprintError, match="no script"):
        fp(pkg, "nonexistent")


def test_disk_cache_gives_the_same_fingerprint(pkg, tmp_path):
    cache = tmp_path / "cache.json"
    FP.use_cache(cache)
    try:
        first = fp(pkg)
        FP._CACHE.save()  # (at process exit otherwise)
        assert json.loads(cache.read_text())["format"] == FP.FORMAT
        FP._CACHE.mem.clear()
        FP._CACHE.keys.clear()
        FP.use_cache(cache)
        assert fp(pkg) == first
        edit(pkg, "gnc/late.py", "return 3", "return 5")
        assert fp(pkg) != first
    finally:
        FP.use_cache(None)


def test_canonical_form_ignores_positions_docstrings_and_comments():
    def digest(code):
        return FP.analyze_source(code)["stmts"][0]["hash"]

    a = digest('def f(x):\n    """doc"""\n    return x + 1  # c\n')
    assert a == digest('\n\ndef f( x ):\n    return (x\n            + 1)\n')
    assert a != digest("def f(x):\n    return x + 2\n")


# ------------------------------------------------------------------------------ the real scripts

SCRIPTS = ["prepare_dataset", "train", "features", "metrics", "combine_metrics", "study", "solve_code", "ufm",
           "compare_codes", "figure"]


def reached(script, select=None):
    return FP.explain(script, select)


def test_each_stage_reaches_its_own_code_and_not_the_others():
    got = {s: reached(s, {"gnc.figures.FIGURES": "tau_sweep"} if s == "figure" else None) for s in SCRIPTS}
    assert "checkpoint_metrics" in got["metrics"]["gnc.metrics.measures"]
    assert "train_run" in got["train"]["gnc.train"]
    assert "prepare" in got["prepare_dataset"]["gnc.data.core"]
    assert "solve_softmax_code" in got["solve_code"]["gnc.codes.softmax"]
    for s in SCRIPTS:
        if s != "metrics":
            assert "checkpoint_metrics" not in got[s].get("gnc.metrics.measures", []), s
        if s != "train":
            assert "train_run" not in got[s].get("gnc.train", []), s
        if s != "prepare_dataset":
            assert "prepare" not in got[s].get("gnc.data.core", []), s
    # the provenance CLI is not part of any job's code
    assert all("gnc.provenance.__main__" not in got[s] for s in SCRIPTS)


def test_each_figure_reaches_only_its_own_figure_function():
    from gnc.figures import FIGURES

    for kind, func in FIGURES.items():
        got = reached("figure", {"gnc.figures.FIGURES": kind})
        # the definitions reached (the package's __init__ re-exports every figure in one import statement)
        figs = {n for mod, names in got.items() if mod != "gnc.figures" for n in names if n.startswith("fig_")}
        assert figs == {func.__name__}, (kind, figs)


@pytest.mark.parametrize("script", ["metrics", "figure"])
def test_modules_python_loads_are_all_in_the_static_closure(script):
    """Independent check: import what the script imports at its top level in a fresh interpreter; every
    gnc module that Python actually loads must be one the static analysis loads too."""
    src = (ROOT / "workflow" / "scripts" / f"{script}.py").read_text()
    imports = [ast.unparse(n) for n in ast.parse(src).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    code = "import sys\n" + "\n".join(imports) + "\nprint(' '.join(m for m in sys.modules if m == 'gnc' or m.startswith('gnc.')))"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    loaded = set(out.split())
    select = {"gnc.figures.FIGURES": "tau_sweep"} if script == "figure" else None
    static = FP.loaded_modules(FP.script_path(script), select)
    assert loaded and loaded <= static, sorted(loaded - static)


def test_every_rule_with_a_script_passes_its_code_fingerprint():
    import re

    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        blocks = re.split(r"\n(?=\s*rule\b)", smk.read_text())
        for block in blocks:
            m = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+)\.py"', block)
            if m:
                assert f'code=code_fingerprint("{m.group(1)}"' in block, (smk.name, block[:200])


# ------------------------------------------------------------------------------ real dry runs

RUN_A, RUN_B = S.RUN_A, S.RUN_B
AGGREGATE = {("combine_metrics", ""), ("compare_codes", ""), ("study", "")}
FIG_CODES, FIG_SPHERE = ("figure_codes", ""), ("figure_sphere", "")
REFINE = ("refine_code", "d2-K4")


def run_jobs(run):
    return {("train", run), ("features", f"{run}@0"), ("features", f"{run}@2"), ("metrics", run)}


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh clone of the workflow next to copies of the tiny study's results (times kept)."""
    study = S.get_study(tmp_path_factory)
    wd = tmp_path_factory.mktemp("fresh-clone")
    S.copy_workflow(wd)
    shutil.copy2(study / "config.yaml", wd / "config.yaml")
    for folder in ("results", "resources", ".snakemake"):
        shutil.copytree(study / folder, wd / folder, symlinks=True,
                        ignore=shutil.ignore_patterns("locks", "incomplete", "gnc-code-analysis.json"))
    later = time.time() + 3600  # every script and module newer than every result, as after a clone
    for f in list((wd / "workflow").rglob("*")) + [wd / "Snakefile"]:
        os.utime(f, (later, later))
    return wd


def check(wd, expected, *extra):
    # extra, then --quiet last (both take lists); `--quiet host` replaces the profiles' quiet: the job blocks
    proc = S.snakemake(wd, "-n", "--cores", "1", *S.TARGETS, *extra, "--quiet", "host")
    out = proc.stdout + proc.stderr
    counts, jobs = S.parse_dry_run(out)
    keys = S.job_keys(jobs)
    assert keys == expected, f"unexpected: {sorted(keys - expected)}\nmissing: {sorted(expected - keys)}\n{out[-3000:]}"
    assert counts == Counter(rule for rule, _ in expected), counts
    return jobs


def insert_statement(path: Path, func: str, line: str) -> None:
    """Insert ``line`` as a statement before the last statement of top-level function ``func``."""
    text = path.read_text()
    node = next(n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef) and n.name == func)
    last = node.body[-1]
    lines = text.splitlines(keepends=True)
    lines.insert(last.lineno - 1, " " * last.col_offset + line + "\n")
    path.write_text("".join(lines))


class edited:
    """Edit files of the clone for one check; restore their text afterwards."""

    def __init__(self, wd: Path, *rels: str):
        self.paths = [wd / "workflow" / r for r in rels]

    def __enter__(self):
        self.saved = [p.read_text() for p in self.paths]
        return self.paths

    def __exit__(self, *exc):
        for p, t in zip(self.paths, self.saved):
            p.write_text(t)


def test_fresh_clone_of_the_same_commit_reruns_nothing(clone):
    check(clone, set())
    # Snakemake's own code trigger compares a script's mtime with its outputs: with it, the clone's
    # new mtimes would rerun every job (which is why the profile leaves it out)
    jobs = check(clone, (run_jobs(RUN_A) | run_jobs(RUN_B) | AGGREGATE | {FIG_CODES, FIG_SPHERE, REFINE}
                         | {("prepare_dataset", f"{n}/{v}") for n, v in datasets(clone)}
                         | {("solve_code", "tammes/d2-K4"), ("solve_code", "softmax/d2-K4"), ("ufm", "d2-K4")}),
                 "--rerun-triggers", "code", "input", "mtime", "params", "software-env")
    assert any("Code has changed" in j["reason"] for j in jobs)


def datasets(wd):
    return [(p.parent.parent.name, p.parent.name) for p in (wd / "resources" / "datasets").glob("*/*/manifest.json")]


def test_comment_docstring_and_format_edits_in_every_stage_rerun_nothing(clone):
    rels = ["gnc/metrics/measures.py", "gnc/train.py", "gnc/data/core.py", "gnc/codes/softmax.py",
            "gnc/figures/training.py", "gnc/figures/geometry.py", "scripts/metrics.py", "scripts/figure.py"]
    with edited(clone, *rels) as paths:
        for p in paths:
            text = p.read_text()
            tree = ast.parse(text)
            funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
            if funcs:  # a comment inside a function, the first function's docstring changed
                insert_statement(p, funcs[-1].name, "# an explanatory comment")
                text = p.read_text()
                f = funcs[0]
                doc = ast.get_docstring(f, clean=False)
                if doc:
                    text = text.replace(doc, doc + " (reworded)", 1)
            p.write_text("# header comment\n\n" + text.replace("\n\n\n", "\n\n\n\n") + "\n# trailing comment\n")
        check(clone, set())


STAGE_EDITS = {
    "metrics": ("gnc/metrics/measures.py", "checkpoint_metrics",
                {("metrics", RUN_A), ("metrics", RUN_B)} | AGGREGATE | {FIG_CODES}),
    "training loop": ("gnc/train.py", "train_run", run_jobs(RUN_A) | run_jobs(RUN_B) | AGGREGATE | {FIG_CODES, FIG_SPHERE, REFINE}),
    "data preparation": ("gnc/data/core.py", "prepare", None),  # expected set needs the dataset versions
    "softmax-code solver": ("gnc/codes/softmax.py", "solve_softmax_code",
                            {("solve_code", "tammes/d2-K4"), ("solve_code", "softmax/d2-K4"), REFINE, ("ufm", "d2-K4"),
                             ("compare_codes", ""), ("study", ""), FIG_CODES}),
    "feature extraction": ("gnc/features.py", "extract_features",
                           {("features", f"{r}@{e}") for r in (RUN_A, RUN_B) for e in (0, 2)}
                           | {("metrics", RUN_A), ("metrics", RUN_B)} | AGGREGATE | {FIG_CODES, FIG_SPHERE, REFINE}),
    "UFM solver": ("gnc/codes/ufm.py", "solve_ufm", {("ufm", "d2-K4"), ("compare_codes", ""), ("study", ""), FIG_CODES}),
    "codes comparison": ("gnc/comparison.py", "build_codes_file", {("compare_codes", ""), ("study", ""), FIG_CODES}),
    "study catalog": ("gnc/results.py", "build_study", {("study", "")}),
    "one figure (codes)": ("gnc/figures/geometry.py", "fig_codes", {FIG_CODES}),
    "another figure (sphere)": ("gnc/figures/geometry.py", "fig_sphere", {FIG_SPHERE}),
}


@pytest.mark.parametrize("stage", list(STAGE_EDITS))
def test_a_semantic_edit_reruns_exactly_that_stage_and_what_depends_on_it(clone, stage):
    rel, func, expected = STAGE_EDITS[stage]
    if expected is None:
        expected = ({("prepare_dataset", f"{n}/{v}") for n, v in datasets(clone)} | run_jobs(RUN_A)
                    | run_jobs(RUN_B) | AGGREGATE | {FIG_CODES, FIG_SPHERE, REFINE})
    with edited(clone, rel) as (path,):
        insert_statement(path, func, "_fingerprint_test_edit = 1")
        jobs = check(clone, expected)
    first = {j["rule"] for j in jobs if "Params have changed" in j["reason"]}
    assert first, [j["reason"] for j in jobs]
    check(clone, set())  # restored text: nothing to do again


def test_a_semantic_edit_of_a_script_reruns_its_jobs(clone):
    with edited(clone, "scripts/metrics.py") as (path,):
        path.write_text(path.read_text().replace("opts = dict(snakemake.params.options)",
                                                 "opts = dict(snakemake.params.options)\n    opts = dict(opts)"))
        check(clone, {("metrics", RUN_A), ("metrics", RUN_B)} | AGGREGATE | {FIG_CODES})


def test_results_record_the_fingerprint_and_stale_says_which_are_stale(clone, capsys):
    root = clone / "workflow"
    metrics = clone / "results" / "runs" / RUN_A / "metrics.nc"
    attrs = P.read_attrs(metrics)
    assert attrs["gnc_code_fingerprint"] == FP.fingerprint("metrics", None, root)
    assert json.loads(attrs["gnc_code_scope"]) == {"script": "metrics"}
    ckpt = next((clone / "results" / "runs" / RUN_B / "ckpt").glob("*.pt"))
    assert P.read_attrs(ckpt)["gnc_code_fingerprint"] == FP.fingerprint("train", None, root)
    side = json.loads((clone / "results" / "figures" / "codes.provenance.json").read_text())
    assert json.loads(side["gnc_code_scope"]) == {"script": "figure", "select": {"gnc.figures.FIGURES": "codes"}}
    assert provenance_cli(["--stale", "--code-root", str(root), str(clone / "results"), str(clone / "resources")]) == 0
    out = capsys.readouterr().out
    assert " 0 stale, 0 without" in out
    n_current = int(out.split("== ")[1].split(" current")[0])
    assert n_current >= 15, out
    with edited(clone, "gnc/metrics/measures.py") as (path,):
        insert_statement(path, "checkpoint_metrics", "_fingerprint_test_edit = 1")
        assert provenance_cli(["--stale", "--code-root", str(root), str(clone / "results")]) == 1
        out = capsys.readouterr().out
    stale = {line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("STALE")}
    assert stale == {str(clone / "results" / "runs" / r / "metrics.nc") for r in (RUN_A, RUN_B)}, out
