"""bslr: train grids of networks over batch size and learning rate, then test and plot them.

Reproduces and extends He, Liu & Tao, "Control Batch Size and Learning Rate to Generalize Well"
(NeurIPS 2019). Data flow: config -> grid -> train -> per-run Parquet -> aggregate -> stats, figures.
"""

# A --configfile replaces the embedded default instead of being merged into it: Snakemake merges
# config files recursively, so the default's experiments would otherwise run with every other config.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        rules.aggregate.output,
        rules.stats.output,
        PLAN.figure_files(),
