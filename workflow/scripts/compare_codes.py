"""Snakemake job: results/codes.nc — softmax vs Tammes codes for every (d, K), and every trained
classifier compared with the softmax code (GNC2 fraction, distance up to rotation and relabeling)."""
from gnc import comparison
from gnc.jobs import job

with job(snakemake) as log:  # noqa: F821
    ds = comparison.build_codes_file(
        refined=snakemake.input.refined, ufm=snakemake.input.ufm,
        metrics=snakemake.input.metrics, features=snakemake.params.features, runs=snakemake.params.runs,
        out=snakemake.output[0])
    log.info("codes: %s", dict(ds.sizes))
    for line in comparison.verdict_lines(ds):
        log.info("%s", line)
