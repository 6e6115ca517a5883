"""Snakemake job: results/claims.csv — which claims of the two papers hold in this study."""
from gnc.claims import write_claims
from gnc.jobs import job

with job(snakemake) as log:  # noqa: F821
    frame = write_claims(snakemake.input.metrics, snakemake.input.codes, snakemake.output.csv,
                         rst_out=snakemake.output.rst)
    for row in frame.itertuples():
        log.info("%s: %s (%s)", row.claim, row.holds or "not tested", row.measured or row.note)
