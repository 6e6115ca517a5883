# Figures: one rule per figure, drawn from the netCDF results only (never retrains). Each writes
# PNG + PDF, the tidy CSV of exactly the plotted data, a provenance sidecar and a generated caption.

FIGURE_KINDS = [
    "tau_sweep",
    "arch_comparison",
    "d_sweep",
    "cmf",
    "ncc",
    "assignment",
    "ufm_tau",
    "codes",
    "sphere",
]
FIGURE_CATEGORY = {
    "tau_sweep": "1. Training dynamics",
    "arch_comparison": "1. Training dynamics",
    "cmf": "1. Training dynamics",
    "ncc": "1. Training dynamics",
    "d_sweep": "2. Classifier geometry",
    "assignment": "2. Classifier geometry",
    "sphere": "2. Classifier geometry",
    "ufm_tau": "3. Softmax codes and Tammes",
    "codes": "3. Softmax codes and Tammes",
}


def sphere_features():
    """Final-checkpoint features of the d = 2 and d = 3 runs (seed 0 first), at most 4 panels."""
    picks = [r for r in RUNS if RUNS[r].d in (2, 3)]
    picks.sort(key=lambda r: (RUNS[r].seed, RUNS[r].d, RUNS[r].K, r))
    out = {}
    for r in picks[:4]:
        x = RUNS[r]
        title = f"{x.dataset} d={x.d} K={x.K} tau={fmt_num(x.tau)} seed {x.seed}"
        out[title] = f"{run_dir(r)}/features/epoch={checkpoints_of(r)[-1]}.nc"
    return out


def figure_inputs(kind):
    from gnc.figures import FIGURE_INPUTS

    files = {}
    needs = FIGURE_INPUTS[kind]
    if "metrics" in needs:
        files["metrics"] = f"{OUT}/metrics.nc"
    if "codes" in needs:
        files["codes"] = f"{OUT}/codes.nc"
    if "features" in needs:
        files["features"] = list(sphere_features().values())
    return files


def figure_targets():
    return [f"{OUT}/figures/{kind}.png" for kind in FIGURE_KINDS]


for _kind in FIGURE_KINDS:

    rule:
        name:
            f"figure_{_kind}"
        input:
            **figure_inputs(_kind),
        output:
            png=report(
                f"{OUT}/figures/{_kind}.png",
                caption=f"../report/{_kind}.rst",
                category=FIGURE_CATEGORY[_kind],
            ),
            pdf=f"{OUT}/figures/{_kind}.pdf",
            csv=f"{OUT}/figures/{_kind}.csv",
            provenance=f"{OUT}/figures/{_kind}.provenance.json",
            caption=f"{OUT}/figures/{_kind}.caption.rst",
        params:
            kind=_kind,
            titles=sphere_features() if _kind == "sphere" else {},
            dpi=config["figures"]["dpi"],
            code=code_fingerprint("figure", {"gnc.figures.FIGURES": _kind}),
        log:
            f"{OUT}/logs/figures/{_kind}.log",
        conda:
            "../../envs/gnc.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=15,
        script:
            "../scripts/figure.py"
