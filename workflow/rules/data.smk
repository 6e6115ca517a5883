# Prepare one dataset version: versioned folder with uint8 arrays + manifest (sha256 of every file).


rule prepare_dataset:
    output:
        manifest=f"{RES}/datasets/{{name}}/{{version}}/manifest.json",
    params:
        spec=lambda wc: config["datasets"][wc.name],
        root=RES,
    log:
        f"{OUT}/logs/prepare/{{name}}-{{version}}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/prepare_dataset.py"
