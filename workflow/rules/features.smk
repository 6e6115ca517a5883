# Features of one checkpoint (train and test splits, no augmentation).


rule features:
    input:
        ckpt=f"{OUT}/runs/{{run}}/ckpt",
        history=f"{OUT}/runs/{{run}}/history.nc",
        manifest=lambda wc: dataset_manifest(run_of(wc).dataset),
    # metrics.keep_features: false makes them temporary: deleted once the metrics, codes and figures
    # that read them are done (made again from the checkpoint if a later change needs them)
    output:
        (
            f"{OUT}/runs/{{run}}/features/epoch={{epoch}}.nc"
            if config["metrics"]["keep_features"]
            else temp(f"{OUT}/runs/{{run}}/features/epoch={{epoch}}.nc")
        ),
    log:
        f"{OUT}/logs/features/{{run}}/epoch={{epoch}}.log",
    conda:
        "../../envs/gnc.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        batch_size=config["metrics"]["batch_size"],
        code=code_fingerprint("features"),
    script:
        "../scripts/features.py"
