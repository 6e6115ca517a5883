# Figures: one rule per figure of the registry (gnc.figures.registry) that the study can draw, from
# the netCDF results only (never retrains). Each writes the configured image formats (PNG always: the
# report shows it), the tidy CSV of exactly the plotted data, a provenance sidecar and a caption.
# What each figure shows, or why it is not drawn, is planned here from the runs and `figures:`.
from gnc.figures import format_tau as fmt_tau
from gnc.figures.registry import REGISTRY, figure_index_rst, plan_figures

FIGURE_PLANS = plan_figures([r.coords for r in RUNS.values()], config["figures"])
FIGURE_FORMATS = ["png"] + [f for f in config["figures"]["formats"] if f != "png"]


def _run_id(coords):
    return next(r for r in RUNS if RUNS[r].coords == coords)


def sphere_features():
    """{panel title: final-checkpoint features file} of the runs the sphere figure shows."""
    out = {}
    for c in FIGURE_PLANS["sphere"].expected:
        r = _run_id(c)
        title = f"{c['dataset']}, d={c['d']}, K={c['K']}, τ={fmt_tau(c['tau'])}, seed {c['seed']}"
        out[title] = f"{run_dir(r)}/features/epoch={checkpoints_of(r)[-1]}.nc"
    return out


def figure_inputs(kind):
    files = {}
    for need in REGISTRY[kind].inputs:
        if need == "features":
            files["features"] = list(sphere_features().values())
        else:
            files[need] = f"{OUT}/{need}.nc"
    return files


def figure_options(kind):
    """Keyword arguments of the figure function: the setting and the runs the plan expects."""
    if REGISTRY[kind].inputs[0] != "metrics":
        return {}
    return FIGURE_PLANS[kind].as_params()


def figure_targets():
    drawn = [f"{OUT}/figures/{kind}.{fmt}" for kind in REGISTRY if FIGURE_PLANS[kind].draw for fmt in FIGURE_FORMATS]
    return drawn + [f"{OUT}/figures/index.rst"]


for _kind, _spec in REGISTRY.items():
    if not FIGURE_PLANS[_kind].draw:
        continue

    rule:
        name:
            f"figure_{_kind}"
        input:
            **figure_inputs(_kind),
        output:
            png=report(
                f"{OUT}/figures/{_kind}.png",
                caption=f"../report/{_spec.report_caption}",
                category=_spec.category,
            ),
            **{fmt: f"{OUT}/figures/{_kind}.{fmt}" for fmt in FIGURE_FORMATS if fmt != "png"},
            csv=f"{OUT}/figures/{_kind}.csv",
            provenance=f"{OUT}/figures/{_kind}.provenance.json",
            caption=f"{OUT}/figures/{_kind}.caption.rst",
        params:
            kind=_kind,
            options=figure_options(_kind),
            titles=list(sphere_features()) if _kind == "sphere" else [],
            formats=FIGURE_FORMATS,
            dpi=config["figures"]["dpi"],
        log:
            f"{OUT}/logs/figures/{_kind}.log",
        threads: 1
        group:
            "figures"
        resources:
            mem_mb=2000,
            runtime=15,
        script:
            "../scripts/figure.py"


rule figure_index:
    """Which figures the study draws, what each shows, and why the others are not drawn."""
    output:
        f"{OUT}/figures/index.rst",
    params:
        plans={k: (p.draw, p.why, p.select) for k, p in FIGURE_PLANS.items()},
    localrule: True
    run:
        from gnc.io import write_text_atomic

        write_text_atomic(output[0], figure_index_rst(FIGURE_PLANS))
