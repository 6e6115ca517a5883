"""Snakemake job: draw one figure from the netCDF results; write its image formats, CSV, provenance, caption."""
import json
from pathlib import Path

from gnc import figures as F
from gnc.io import open_netcdf, write_text_atomic
from gnc.provenance import summary_rst
from gnc.jobs import job

with job(snakemake, torch=False) as log:  # noqa: F821
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
    fig, frame = F.make_figure(kind, **inputs, **snakemake.params.options)
    prefix = str(Path(snakemake.output.png).with_suffix(""))
    written = F.save_figure(fig, frame, prefix, sources=sources, caption=F.figure_caption(kind, frame=frame),
                            dpi=snakemake.params.dpi, formats=snakemake.params.formats)
    # the report shows the caption file: append the provenance of the data behind the figure
    prov = json.loads(Path(written["provenance"]).read_text())
    cap = Path(written["caption"])
    write_text_atomic(cap, cap.read_text() + "\n" + summary_rst(prov))
    log.info("figure %s: %d plotted points", kind, len(frame))
