# Which claims of Jiang et al. and Papyan et al. hold in this study: results/claims.csv (+ provenance
# sidecar) and the report's front-page table (results/claims.rst), from the metrics and codes files only.


rule claims:
    input:
        metrics=f"{OUT}/metrics.nc",
        codes=f"{OUT}/codes.nc",
    output:
        csv=report(
            f"{OUT}/claims.csv",
            caption="../report/claims.rst",
            category="0. Claims",
        ),
        provenance=f"{OUT}/claims.provenance.json",
        rst=f"{OUT}/claims.rst",
    log:
        f"{OUT}/logs/claims.log",
    conda:
        "../../envs/gnc.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_fingerprint("claims"),
    script:
        "../scripts/claims.py"
