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
    meanings = ds["verdict"].attrs["flag_meanings"].split()
    known = ds["best_known_status"].attrs["flag_meanings"].split()
    for d in ds["d"].values:
        for K in ds["K"].values:
            v = int(ds["verdict"].sel(d=d, K=K))
            if v >= 0:
                log.info("(d=%d, K=%d): %s; Tammes %.9f deg (vs the best known: %s), softmax rho_ovr %.10f", d, K,
                         meanings[v], float(ds["tammes_angle"].sel(d=d, K=K)),
                         known[int(ds["best_known_status"].sel(d=d, K=K))].replace("_", " "),
                         float(ds["softmax_value"].sel(d=d, K=K)))
