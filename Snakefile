# gnc-study — Generalized Neural Collapse (K > d+1), from data to figures.
#
#   snakemake --cores all                          the default study (config.yaml), offline, CPU
#   snakemake --cores all --configfile config/paper.yaml   the paper's study (GPU)
#   snakemake --cores all --config results=out      the default study, into out/ (merged over config.yaml)
#   snakemake --cores all --config study=my.yaml    your study (YAML errors with file and line)
#   snakemake --report results/report.html         HTML report of the figures
#
# Stages (one rules file each; the logic lives in workflow/gnc/):
#   data -> train -> features -> metrics -> codes -> figures, claims
from snakemake.utils import min_version

min_version("9.27")  # as pyproject.toml requires


# The study: config.yaml, unless --configfile/--config give one of their own (workflow/rules/common.smk
# reads and validates it before anything else).
include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/codes.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/claims.smk"


# The profiles set `quiet: [rules, host]`; a failed job's error block (rule, log, the log itself) is
# printed all the same, and the scheduler's chatter is dropped (workflow/gnc/console.py).
if workflow.is_main_process:
    from snakemake.logging import logger as _smk_logger
    from gnc.console import keep_job_errors, quiet_scheduler

    quiet_scheduler(_smk_logger, workflow.output_settings)
    keep_job_errors(_smk_logger, workflow.output_settings)


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        f"{OUT}/study.nc",
        f"{OUT}/study.csv",
        f"{OUT}/codes.nc",
        f"{OUT}/claims.csv",
        FIGURE_TARGETS,
