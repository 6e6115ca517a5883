"""Snakemake job: the study catalog — results/study.nc (all runs, epochs, metrics, training history,
comparisons with codes) and its tidy CSV export."""
from gnc import results
from gnc.jobs import job

with job(snakemake) as log:  # noqa: F821
    ds = results.build_study(snakemake.input.metrics, snakemake.input.histories, snakemake.input.codes,
                             config=dict(snakemake.config), nc_out=snakemake.output.nc,
                             csv_out=snakemake.output.csv, summary_out=snakemake.output.summary)
    log.info("study: %s", dict(ds.sizes))
