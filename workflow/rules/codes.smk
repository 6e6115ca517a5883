# Softmax codes, Tammes codes and the UFM tau -> 0 study for every (d, K) of the grid; per (d, K) a
# cross-polish of both codes and the trained classifiers (the verdict same / differ / undecided), then
# the comparison with what training produced.


rule solve_code:
    output:
        f"{OUT}/codes/{{problem}}/d{{d}}-K{{K}}.nc",
    log:
        f"{OUT}/logs/codes/{{problem}}-d{{d}}-K{{K}}.log",
    wildcard_constraints:
        problem="tammes|softmax",
    conda:
        "../../envs/gnc.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        # only what the solvers use: adding a (d, K) to codes.extra or changing a UFM option reruns no solve
        options={k: config["codes"][k] for k in ("restarts", "seed", "time_budget")},
        code=code_fingerprint("solve_code"),
    script:
        "../scripts/solve_code.py"


rule ufm:
    input:
        softmax=f"{OUT}/codes/softmax/d{{d}}-K{{K}}.nc",
    output:
        f"{OUT}/codes/ufm/d{{d}}-K{{K}}.nc",
    log:
        f"{OUT}/logs/codes/ufm-d{{d}}-K{{K}}.log",
    conda:
        "../../envs/gnc.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        options={k: config["codes"][k] for k in ("ufm_n", "ufm_tau", "ufm_steps", "seed")},
        code=code_fingerprint("ufm"),
    script:
        "../scripts/ufm.py"


rule refine_code:
    input:
        tammes=f"{OUT}/codes/tammes/d{{d}}-K{{K}}.nc",
        softmax=f"{OUT}/codes/softmax/d{{d}}-K{{K}}.nc",
        trained=lambda wc: list(final_features_at(wc).values()),
    output:
        f"{OUT}/codes/refined/d{{d}}-K{{K}}.nc",
    log:
        f"{OUT}/logs/codes/refine-d{{d}}-K{{K}}.log",
    conda:
        "../../envs/gnc.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        options={k: config["codes"][k] for k in ("time_budget",)},
        trained=final_features_at,
        code=code_fingerprint("refine_code"),
    script:
        "../scripts/refine_code.py"


rule compare_codes:
    input:
        refined=[f"{OUT}/codes/refined/d{d}-K{K}.nc" for d, K in CODE_GRID],
        ufm=[f"{OUT}/codes/ufm/d{d}-K{K}.nc" for d, K in CODE_GRID],
        metrics=f"{OUT}/metrics.nc",
        features=list(final_features().values()),
    output:
        f"{OUT}/codes.nc",
    log:
        f"{OUT}/logs/compare_codes.log",
    conda:
        "../../envs/gnc.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        runs=lambda wc: {r: RUNS[r].coords for r in RUNS},
        features=final_features(),
        code=code_fingerprint("compare_codes"),
    script:
        "../scripts/compare_codes.py"
