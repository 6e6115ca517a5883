"""Snakemake job: GNC/NC metrics of every checkpoint of one run -> one netCDF over epoch."""
import xarray as xr

from gnc.io import open_netcdf, write_netcdf
from gnc.jobs import job
from gnc.metrics import checkpoint_metrics, require_certified
from gnc.provenance import provenance
from gnc.results import with_run_coords

with job(snakemake) as log:  # noqa: F821
    opts = dict(snakemake.params.options)
    parts = []
    for epoch, path in zip(snakemake.params.epochs, snakemake.input.features):
        feats = open_netcdf(path)
        # an uncertified GNC2 distance fails the job (nothing is written), naming the epoch and classes
        m = require_certified(checkpoint_metrics(feats, pinv_rtol=opts["pinv_rtol"]), f"{path} (epoch {epoch})")
        parts.append(m.expand_dims(epoch=[int(epoch)]))
        log.info("epoch %s: gnc1=%.4g gnc2=%.4g gnc3=%.4g test_acc=%.4g", epoch, float(m.gnc1), float(m.gnc2),
                 float(m.gnc3), float(m.test_acc))
    ds = xr.concat(parts, dim="epoch", join="outer", combine_attrs="drop_conflicts")
    ds = ds.assign_coords(class_index=feats["class_index"], class_name=feats["class_name"])  # on k
    ds = with_run_coords(ds, snakemake.params.coords)
    keep = {k: v for k, v in feats.attrs.items() if k.startswith("gnc_") and k not in ("gnc_created",)}
    ds.attrs = {**keep, **provenance(metrics_options=opts, stage="metrics")}
    write_netcdf(ds, snakemake.output[0])
