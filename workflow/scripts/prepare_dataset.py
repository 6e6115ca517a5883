"""Snakemake job: prepare one dataset version (see gnc.data)."""
from pathlib import Path

from gnc import data
from gnc.jobs import job

with job(snakemake) as log:  # noqa: F821 - injected by Snakemake
    name, version = snakemake.wildcards.name, snakemake.wildcards.version
    spec = dict(snakemake.config["datasets"][name])
    expected = data.version_id(name, spec)
    if expected != version:
        raise ValueError(f"dataset {name}: requested version {version} but the config describes {expected}")
    manifest = data.prepare(name, spec, Path(snakemake.output.manifest).parent)
    log.info("prepared %s %s: %s", name, version, manifest.get("counts"))
