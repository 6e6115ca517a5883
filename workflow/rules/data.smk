# Prepare one dataset version: versioned folder with uint8 arrays + manifest (sha256 of every file).


rule prepare_dataset:
    output:
        manifest=f"{RES}/datasets/{{name}}/{{version}}/manifest.json",
    log:
        f"{OUT}/logs/prepare/{{name}}-{{version}}.log",
    conda:
        "../../envs/gnc.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    # no params: every content-affecting option is in the version (the output path), and
    # non-content options (raw-data `path`/`root`, `download`) must not re-prepare and so retrain
    # everything; the script reads the spec from the (resolved) config
    params:
        code=code_fingerprint("prepare_dataset"),
    script:
        "../scripts/prepare_dataset.py"
