"""Snakemake job: train one run; publish its checkpoints and the per-epoch history (history.nc)."""
from pathlib import Path

from gnc import train
from gnc.grid import RUN_DIMS
from gnc.io import write_netcdf
from gnc.jobs import job
from gnc.results import history_dataset

with job(snakemake) as log:  # noqa: F821
    spec = dict(snakemake.params.spec)
    ckpt_dir = Path(snakemake.output.ckpt)
    out_ckpts = {int(e): str(ckpt_dir / f"epoch={int(e)}.pt") for e in spec["checkpoints"]}
    train.train_run(spec, Path(snakemake.input.manifest).parent, Path(snakemake.params.work), out_ckpts,
                    threads=snakemake.threads, log=log)
    final = train.load_checkpoint(out_ckpts[max(out_ckpts)])
    coords = {k: spec[k] for k in RUN_DIMS}
    write_netcdf(history_dataset(final["history"], coords, attrs=final.get("provenance", {})),
                 snakemake.output.history)
