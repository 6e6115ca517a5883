"""The conda environment file mirrors the pip requirements (there is no conda here to run it)."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# pip name -> conda-forge name
CONDA_NAME = {"torch": "pytorch", "netCDF4": "netcdf4", "snakemake[reports]": "snakemake"}


def _pip_requirements():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    out = {}
    for dep in deps:
        m = re.match(r"([A-Za-z0-9_.\-\[\]]+)\s*(.*)", dep)
        out[CONDA_NAME.get(m.group(1), m.group(1).lower())] = m.group(2)
    return out


def _constraints():
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, ver = line.split("==")
            out[CONDA_NAME.get(name, name)] = ver
    return out


def _conda():
    env = yaml.safe_load((ROOT / "envs" / "gnc.yaml").read_text())
    out = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            name, _, spec = dep.partition(" ")
            out[name] = spec.strip()
    return out


def test_every_pip_requirement_is_in_the_conda_env():
    conda = _conda()
    missing = sorted(set(_pip_requirements()) - set(conda))
    assert not missing, f"envs/gnc.yaml lacks {missing}"


def test_lower_bounds_and_pins_agree():
    conda, pins = _conda(), _constraints()
    for name, spec in _pip_requirements().items():
        if name in pins:
            assert conda[name] == f"={pins[name]}", f"{name}: conda {conda[name]!r} vs constraints =={pins[name]}"
        else:
            lower = re.search(r">=\s*([0-9.]+)", spec)
            if lower:
                assert conda[name] == f">={lower.group(1)}", f"{name}: conda {conda[name]!r} vs pip {spec!r}"


def test_every_rule_uses_the_env_file():
    """Each rule that runs something in a job process (script/shell/notebook/wrapper) names envs/gnc.yaml in
    a `conda:` directive (a `run:` block runs inside Snakemake's own process, where `conda:` does not apply)."""
    env = (ROOT / "envs" / "gnc.yaml").resolve()
    rules = 0
    for smk in [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]:
        text = smk.read_text()
        # one block per rule: from `rule ...:` to the next rule (or the end of the file)
        for block in re.split(r"^[ \t]*rule\b", text, flags=re.M)[1:]:
            if not re.search(r"^\s+(script|shell|notebook|wrapper):", block, re.M):
                continue  # e.g. `rule all`: only inputs; `figure_index`: a run: block
            rules += 1
            envs = re.findall(r'^\s+conda:\s*\n\s*"([^"]+)"', block, re.M)
            assert len(envs) == 1, f"{smk.name}: a rule without exactly one conda: directive:\n{block[:300]}"
            assert (smk.parent / envs[0]).resolve() == env, f"{smk.name}: conda: {envs[0]} is not {env}"
    assert rules >= 10, f"found only {rules} rules: the parsing above no longer matches the rule files"
