import json
import shlex
import sys
from pathlib import Path

try:
    from bslr.catalog import FIGURES
    from bslr.errors import ConfigError
    from bslr.plan import (
        AGGREGATE_OUTPUTS,
        EXECUTION,
        EXECUTION_LOG,
        FIGURES_DIR,
        FIGURE_LOGS,
        FIGURE_PATHS,
        STATS_LOG,
        STATS_OUTPUTS,
        TABLES_DIR,
        Plan,
        figure_pattern,
    )
except ImportError:
    sys.exit(
        "the bslr package is not installed: run `pip install -e .` in this directory first"
    )

# The plan knows the grid, the packs and every training path; the rules ask it (bslr/plan.py).
try:
    PLAN = Plan(config, workflow.config_settings.config)
except ConfigError as error:
    sys.exit(f"invalid configuration: {error}")
CONFIG = PLAN.config
# Where this workflow's files are: under a Snakemake module's prefix, or in the working directory.
ROOT = Path(workflow.modifier.path_modifier.prefix or ".")
# A dry run plans without data (the paper's grid can be checked anywhere); it says what a real run refuses.
if workflow.output_settings.dryrun and workflow.is_main_process:
    replacing = PLAN.replacement_message(ROOT)
    if replacing:
        print(
            f"bslr: warning: {replacing}; "
            + (
                "replace_results: true lets a real run replace them"
                if CONFIG["replace_results"]
                else "a real run stops unless replace_results: true"
            ),
            file=sys.stderr,
        )
    for message in PLAN.missing_data(ROOT):
        print(
            f"bslr: warning: {message}; a real run stops before any job",
            file=sys.stderr,
        )

# `snakemake --report` bundles what is on disk and runs nothing: it refuses another config's tables, or this
# config's figures older than them, with the command that brings them up to date (`--report-after-run` runs
# the workflow first, and needs no check). Snakemake tells a workflow no more about its command than argv.
REPORT_ONLY = any(
    argument == "--report" or argument.startswith("--report=") for argument in sys.argv
) and not any(argument.startswith("--report-after-run") for argument in sys.argv)
if REPORT_ONLY and workflow.is_main_process:
    problem = PLAN.report_problem(ROOT)
    if problem:
        sys.exit(f"bslr: no report: {problem}")


wildcard_constraints:
    experiment=r"[A-Za-z][A-Za-z0-9_]*",
    dataset=r"[A-Za-z0-9_]+",
    model=r"[A-Za-z0-9_]+",
    batch_size=r"[0-9]+",
    lr=r"[0-9]+(\.[0-9]+)?",
    seed=r"[0-9]+",
