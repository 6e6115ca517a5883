# gnc-study — Generalized Neural Collapse (K > d+1), from data to figures.
#
#   snakemake --cores all                          the default study (config.yaml), offline, CPU
#   snakemake --cores all --configfile config/paper.yaml   the paper's study (GPU)
#   snakemake --report results/report.html         HTML report of the figures
#
# Stages (one rules file each; the logic lives in workflow/gnc/):
#   data -> train -> features -> metrics -> codes -> figures, claims
from snakemake.utils import min_version

min_version("9.0")

# The embedded default study is used only when no --configfile/--config is given, so a user's
# config replaces it instead of being merged into it.
if not config:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/codes.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/claims.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        f"{OUT}/study.nc",
        f"{OUT}/study.csv",
        f"{OUT}/codes.nc",
        f"{OUT}/claims.csv",
        figure_targets(),
