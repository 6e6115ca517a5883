"""Snakemake job: combine per-run metrics into results/metrics.nc over (variant, dataset, arch, tau, d, K, seed, epoch)."""
from gnc.io import open_netcdf, write_netcdf
from gnc.jobs import job
from gnc.provenance import provenance
from gnc.results import combine_runs, provenance_summary

with job(snakemake) as log:  # noqa: F821
    ds = combine_runs((open_netcdf(p) for p in snakemake.input),
                      attrs={**provenance(stage="combine_metrics"), **provenance_summary(snakemake.input)})
    write_netcdf(ds, snakemake.output[0])
    log.info("combined %d runs: %s", len(snakemake.input), dict(ds.sizes))
