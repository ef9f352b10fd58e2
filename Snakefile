# The workflow is workflow/Snakefile (the Snakemake workflow catalog's standard layout); this file lets
# `snakemake` run from the checkout's root as the README says. An included file's default target stays
# its own, so the main file names it.
include: "workflow/Snakefile"


workflow.default_target = "all"
