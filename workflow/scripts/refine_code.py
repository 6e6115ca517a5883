"""Snakemake job: cross-polish the Tammes code, the softmax code and the trained classifiers of one
(d, K); save both problems' best codes and the verdict same / differ / undecided."""
from gnc import codes
from gnc.codes import cross
from gnc.io import write_netcdf
from gnc.jobs import job
from gnc.provenance import provenance

with job(snakemake) as log:  # noqa: F821
    d, K = int(snakemake.wildcards.d), int(snakemake.wildcards.K)
    cands = cross.load_candidates(snakemake.input.tammes, snakemake.input.softmax, snakemake.params.trained)
    res = cross.cross_refine(d, K, cands, time_budget=snakemake.params.options["time_budget"])
    ds = cross.cross_dataset(res)
    ds.attrs.update(provenance(stage="refine_code", options=dict(snakemake.params.options)))
    write_netcdf(ds, snakemake.output[0])
    for c in res.pool:
        log.info("%-32s angle %.9f deg  rho_ovr %.10f (gap %.1e)  %.1f s", c.name, c.angle, c.ovr, c.ovr_gap, c.seconds)
    log.info("d=%d K=%d: %s (%s), %.1f s", d, K, res.evidence["verdict"], res.evidence["reason"], res.seconds)
