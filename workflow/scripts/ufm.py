"""Snakemake job: the unconstrained-feature model over a grid of tau for one (d, K)."""
from gnc import codes
from gnc.io import write_netcdf
from gnc.jobs import job

with job(snakemake) as log:  # noqa: F821
    d, K = int(snakemake.wildcards.d), int(snakemake.wildcards.K)
    opts = snakemake.params.options
    ds = codes.ufm_tau_study(d, K, taus=opts["ufm_tau"], n=opts["ufm_n"], steps=opts["ufm_steps"], seed=opts["seed"])
    write_netcdf(ds, snakemake.output[0])
    log.info("ufm d=%d K=%d: %s", d, K, ds)
