"""Snakemake job: features of one checkpoint (train and test splits, no augmentation)."""
from pathlib import Path

from gnc import features
from gnc.io import write_netcdf
from gnc.jobs import job

with job(snakemake) as log:  # noqa: F821
    ckpt = Path(snakemake.input.ckpt) / f"epoch={snakemake.wildcards.epoch}.pt"
    ds = features.extract_features(ckpt, Path(snakemake.input.manifest).parent,
                                   batch_size=snakemake.params.batch_size, threads=snakemake.threads)
    write_netcdf(ds, snakemake.output[0])
    log.info("features: %s", dict(ds.sizes))
