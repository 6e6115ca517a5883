# Train one run. The resumable state lives in results/.work/<run>/ (not a declared output, so a
# failed job's state survives Snakemake's clean-up and the rerun resumes from the last epoch).
# A run with `init_from` depends on the checkpoints of the run it starts from (trained first, and
# this run retrained when they change).


rule train:
    input:
        manifest=lambda wc: dataset_manifest(run_of(wc).dataset),
        init=init_checkpoints_of,
    output:
        ckpt=directory(f"{OUT}/runs/{{run}}/ckpt"),
        history=f"{OUT}/runs/{{run}}/history.nc",
    log:
        f"{OUT}/logs/train/{{run}}.log",
    conda:
        "../../envs/gnc.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=0,
    params:
        spec=lambda wc: run_of(wc).spec(),
        work=lambda wc: f"{OUT}/.work/{wc.run}",
        code=code_fingerprint("train"),
    script:
        "../scripts/train.py"
