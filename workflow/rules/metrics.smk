# Metrics of every checkpoint of a run (one job per run), then the combined study files.


rule metrics:
    input:
        features=lambda wc: [f"{OUT}/runs/{wc.run}/features/epoch={e}.nc" for e in checkpoints_of(wc.run)],
    output:
        f"{OUT}/runs/{{run}}/metrics.nc",
    log:
        f"{OUT}/logs/metrics/{{run}}.log",
    conda:
        "../../envs/gnc.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        options=config["metrics"],
        coords=lambda wc: run_of(wc).coords,
        epochs=lambda wc: checkpoints_of(wc.run),
        code=code_fingerprint("metrics"),
    script:
        "../scripts/metrics.py"


rule combine_metrics:
    input:
        all_run_metrics(),
    output:
        f"{OUT}/metrics.nc",
    log:
        f"{OUT}/logs/combine_metrics.log",
    conda:
        "../../envs/gnc.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=code_fingerprint("combine_metrics"),
    script:
        "../scripts/combine_metrics.py"


rule study:
    input:
        metrics=f"{OUT}/metrics.nc",
        run_metrics=all_run_metrics(),
        histories=all_histories(),
        codes=f"{OUT}/codes.nc",
    output:
        nc=f"{OUT}/study.nc",
        csv=report(
            f"{OUT}/study.csv",
            caption="../report/study.rst",
            category="Tables",
        ),
        summary=report(
            f"{OUT}/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
        ),
        csv_provenance=f"{OUT}/study.provenance.json",
        summary_provenance=f"{OUT}/summary.provenance.json",
    log:
        f"{OUT}/logs/study.log",
    conda:
        "../../envs/gnc.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    # no config params: the study's inputs change whenever its content would, and the resolved config
    # it records (gnc_config) comes from snakemake.config, so e.g. a figure option does not rerun it
    params:
        code=code_fingerprint("study"),
    script:
        "../scripts/study.py"
