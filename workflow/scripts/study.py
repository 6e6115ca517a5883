"""Snakemake job: the study catalog — results/study.nc (one entry per run: metrics, training history,
last checkpoint, comparisons with codes), its long table study.csv and the summary.csv."""
from gnc import results
from gnc.config import expand_runs
from gnc.jobs import job

with job(snakemake) as log:  # noqa: F821
    runs = expand_runs(snakemake.config)
    ds = results.build_study(results.files_by_run(runs, snakemake.input.run_metrics, "metrics.nc"),
                             results.files_by_run(runs, snakemake.input.histories, "history.nc"),
                             snakemake.input.codes, runs=runs, config=dict(snakemake.config),
                             metrics_path=snakemake.input.metrics, nc_out=snakemake.output.nc,
                             csv_out=snakemake.output.csv, summary_out=snakemake.output.summary)
    log.info("study: %s", dict(ds.sizes))
