"""Snakemake job: the unconstrained-feature model over a grid of tau for one (d, K), each tau run to
convergence and probed from the softmax code."""
import numpy as np
import xarray as xr

from gnc import codes
from gnc.codes.store import load_solution
from gnc.io import write_netcdf
from gnc.jobs import job
from gnc.provenance import provenance

with job(snakemake) as log:  # noqa: F821
    d, K = int(snakemake.wildcards.d), int(snakemake.wildcards.K)
    opts = snakemake.params.options
    ref = load_solution(snakemake.input.softmax)
    ds, sols = codes.ufm_tau_sweep(d, K, opts["ufm_n"], opts["ufm_tau"], reference=ref, seed=opts["seed"],
                                   steps=opts["ufm_steps"], max_rounds=codes.ufm.MAX_ROUNDS)
    ds["ufm_W"] = xr.DataArray(np.stack([s.W for s in sols]), dims=("ufm_tau", "code_row", "component"),
                               attrs={"long_name": "UFM classifier rows (unit vectors)", "units": "1"})
    ds.attrs.update(provenance(stage="ufm", options=dict(opts)))
    write_netcdf(ds, snakemake.output[0])
    for i, t in enumerate(ds["ufm_tau"].values):
        r = ds.isel(ufm_tau=i)
        log.info("ufm d=%d K=%d tau=%g: ovr %.6f (%.4f of the code), %d steps, converged %d, probe from the code: "
                 "ovr %.6f, stuck %d", d, K, t, r.ufm_ovr, r.ufm_ovr_ratio, r.ufm_steps, r.ufm_converged,
                 r.ufm_probe_ovr, r.ufm_stuck)
