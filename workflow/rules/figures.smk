# Figures: one rule per figure of the registry (gnc.figures.registry) that the study can draw, from
# the netCDF results only (never retrains). Each writes the configured image formats (PNG always: the
# report shows it), the tidy CSV of exactly the plotted data, a provenance sidecar and a caption.
# What each figure shows, or why it is not drawn, is planned from the runs and the `figures:` config.
from gnc.figures import registry as FR

FIGURE_PLANS = FR.plan_figures([r.coords for r in RUNS.values()], config["figures"])
FIGURE_FORMATS = ["png"] + [f for f in config["figures"]["formats"] if f != "png"]
SPHERE_FEATURES = FR.sphere_features(FIGURE_PLANS["sphere"], RUNS, OUT)
FIGURE_TARGETS = FR.figure_targets(FIGURE_PLANS, OUT, FIGURE_FORMATS)


for _kind, _spec in FR.REGISTRY.items():
    if not FIGURE_PLANS[_kind].draw:
        continue

    rule:
        name:
            f"figure_{_kind}"
        input:
            **FR.figure_inputs(_kind, OUT, SPHERE_FEATURES),
        output:
            **{fmt: f"{OUT}/figures/{_kind}.{fmt}" for fmt in FIGURE_FORMATS if fmt != "png"},
            png=report(
                f"{OUT}/figures/{_kind}.png",
                caption=f"../report/{_spec.report_caption}",
                category=_spec.category,
            ),
            csv=f"{OUT}/figures/{_kind}.csv",
            provenance=f"{OUT}/figures/{_kind}.provenance.json",
            caption=f"{OUT}/figures/{_kind}.caption.rst",
        log:
            f"{OUT}/logs/figures/{_kind}.log",
        conda:
            "../../envs/gnc.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=15,
        params:
            kind=_kind,
            # the setting shown and the runs expected (figures drawn from metrics.nc)
            options=FIGURE_PLANS[_kind].as_params() if _spec.inputs[0] == "metrics" else {},
            titles=list(SPHERE_FEATURES) if _kind == "sphere" else [],
            formats=FIGURE_FORMATS,
            dpi=config["figures"]["dpi"],
            code=code_fingerprint("figure", {"gnc.figures.FIGURES": _kind}),
        script:
            "../scripts/figure.py"


rule figure_index:
    """Which figures the study draws, what each shows, and why the others are not drawn."""
    output:
        f"{OUT}/figures/index.rst",
    log:
        f"{OUT}/logs/figures/index.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        plans={k: (p.draw, p.why, p.select) for k, p in FIGURE_PLANS.items()},
    run:
        FR.write_figure_index(FIGURE_PLANS, output[0], log[0])
