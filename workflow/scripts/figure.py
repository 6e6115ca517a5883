"""Snakemake job: draw one figure from the netCDF results; write PNG, PDF, CSV, provenance, caption."""
from pathlib import Path

from gnc import figures as F
from gnc.io import open_netcdf
from gnc.jobs import job

with job(snakemake) as log:  # noqa: F821
    kind = snakemake.params.kind
    inputs, sources = {}, []
    for key in ("metrics", "codes"):
        if key in snakemake.input.keys():
            inputs[key] = open_netcdf(snakemake.input[key])
            sources.append(snakemake.input[key])
    if "features" in snakemake.input.keys():
        titles = list(snakemake.params.titles)
        inputs["features"] = {t: open_netcdf(p) for t, p in zip(titles, snakemake.input.features)}
        sources.extend(snakemake.input.features)
    fig, frame = F.make_figure(kind, **inputs)
    prefix = str(Path(snakemake.output.png).with_suffix(""))
    F.save_figure(fig, frame, prefix, sources=sources, caption=F.figure_caption(kind, frame=frame),
                  dpi=snakemake.params.dpi)
    log.info("figure %s: %d plotted points", kind, len(frame))
