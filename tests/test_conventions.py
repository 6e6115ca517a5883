"""Snakemake conventions a workflow-catalog reviewer checks: lint, formatting, min_version, the
catalog file, and the workflow used as a module from another Snakefile with its own config.

Dry-runs and static checks only (a few seconds each)."""
import re
import subprocess
import sys
import tomllib

import yaml

from conftest import ROOT, TINY_CONFIG


def _smk(cwd, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_lint_is_clean(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    p = _smk(ROOT, "--lint", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
             "--configfile", str(tmp_path / "config.yaml"))
    assert p.returncode == 0 and "Lints for" not in p.stdout + p.stderr, (p.stdout + p.stderr)[-4000:]


def test_snakefmt_check():
    """`snakefmt --check` on the Snakefile and the rule files (settings in pyproject.toml)."""
    p = subprocess.run([sys.executable, "-m", "snakefmt", "--diff", "Snakefile", "workflow/rules"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    changed = re.findall(r"Diff for (\S+)", p.stdout + p.stderr)
    assert p.returncode == 0 and not changed, (
        f"run `snakefmt Snakefile workflow/rules`; it would change {changed}:\n{(p.stdout + p.stderr)[-3000:]}")


def test_min_version_is_what_pyproject_requires():
    m = re.search(r'min_version\("([0-9.]+)"\)', (ROOT / "Snakefile").read_text())
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lower = [re.search(r">=\s*([0-9.]+)", d).group(1) for d in deps if d.startswith("snakemake")]
    assert m and lower and m.group(1) == lower[0], (m and m.group(1), lower)


def test_workflow_catalog_file():
    cat = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())
    usage = cat["usage"]
    assert set(usage) == {"mandatory-flags", "software-stack-deployment", "report"}, set(usage)
    assert set(usage["mandatory-flags"]) == {"desc", "flags"}
    stack = usage["software-stack-deployment"]
    assert set(stack) <= {"conda", "apptainer", "apptainer+conda"} and stack["conda"] is True
    assert (ROOT / "envs" / "gnc.yaml").exists()
    assert usage["report"] is True and "report:" in (ROOT / "Snakefile").read_text()
    named = re.findall(r"`?((?:config|workflow|profiles)/[\w./-]+)`?", usage["mandatory-flags"]["desc"])
    assert named, "the usage text names the config and profiles to use"
    for path in named:
        assert (ROOT / path.rstrip(".")).exists(), path


def test_usable_as_a_module_with_its_own_config(tmp_path):
    """Another Snakefile imports every rule under a prefix and gives its own config (results elsewhere)."""
    cfg = {**TINY_CONFIG, "results": "gnc-out", "resources": "gnc-res"}
    (tmp_path / "outer.yaml").write_text(yaml.safe_dump({"gnc": cfg}))
    (tmp_path / "Snakefile").write_text(f'''configfile: "outer.yaml"


module gnc:
    snakefile:
        {str(ROOT / "Snakefile")!r}
    config:
        config["gnc"]


use rule * from gnc as gnc_*


rule all:
    default_target: True
    input:
        rules.gnc_all.input,
''')
    p = _smk(tmp_path, "-n", "-s", "Snakefile", "--directory", str(tmp_path))
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.M))
    assert counts.get("gnc_train") == "2" and counts.get("gnc_study") == "1", counts
    assert "gnc-out/study.nc" in out and "gnc-res/datasets/digits/" in out
    assert not re.search(r"(?<![\w-])results/", out), "a path ignores the module's config"
