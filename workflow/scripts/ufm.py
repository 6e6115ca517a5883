"""Snakemake job: the unconstrained-feature model over a grid of tau for one (d, K)."""
import numpy as np
import xarray as xr

from gnc import codes
from gnc.io import write_netcdf
from gnc.jobs import job
from gnc.provenance import provenance

with job(snakemake) as log:  # noqa: F821
    d, K = int(snakemake.wildcards.d), int(snakemake.wildcards.K)
    opts = snakemake.params.options
    sweep, sols = codes.ufm_tau_sweep(d, K, opts["ufm_n"], opts["ufm_tau"], seed=opts["seed"],
                                      steps=opts["ufm_steps"])
    ds = sweep.rename({v: f"ufm_{v}" for v in sweep.data_vars})
    ds["ufm_W"] = xr.DataArray(np.stack([s.W for s in sols]), dims=("tau", "k", "component"),
                               attrs={"long_name": "UFM classifier rows (unit vectors)", "units": "1"})
    ds["ufm_ovr"].attrs.setdefault("units", "1")
    ds.attrs.update(provenance(stage="ufm", options=dict(opts)))
    write_netcdf(ds, snakemake.output[0])
    for t, s in zip(opts["ufm_tau"], sols):
        log.info("ufm d=%d K=%d tau=%g: ovr %.6f min angle %.3f deg", d, K, t, s.ovr, s.min_angle_deg)
