import json
import os
import sys

try:
    import bslr  # noqa: F401
except ImportError:
    sys.exit(
        "the bslr package is not installed: run `pip install -e .` in this directory first"
    )

from bslr.config import (
    EXECUTION_KEYS,
    ConfigError,
    Run,
    expand_grid,
    format_lr,
    job_resources,
    packed_experiments,
    run_settings,
    scenarios,
    training_settings,
    validate_config,
)
from bslr.data import generated_path
from bslr.figures import EXPERIMENT_FIGURES, FIGURE_INPUTS, FIGURES

try:
    CONFIG = validate_config(config)
except ConfigError as error:
    sys.exit(f"invalid configuration: {error}")

RUNS = expand_grid(CONFIG)
PACKED_EXPERIMENTS = packed_experiments(CONFIG)
# The per-run `train` rule makes the files of every other experiment ("(?!)" matches nothing).
UNPACKED_EXPERIMENTS = (
    "|".join(name for name in CONFIG["experiments"] if name not in PACKED_EXPERIMENTS)
    or "(?!)"
)


wildcard_constraints:
    experiment=r"[A-Za-z][A-Za-z0-9_]*",
    dataset=r"[A-Za-z0-9_]+",
    model=r"[A-Za-z0-9_]+",
    batch_size=r"[0-9]+",
    lr=r"[0-9]+(\.[0-9]+)?",
    seed=r"[0-9]+",


def run_of(wildcards, lr: float | None = None) -> Run:
    """The grid point a training job's wildcards name (a packed job's have no lr: give it)."""
    return Run(
        wildcards.experiment,
        wildcards.model,
        wildcards.dataset,
        int(wildcards.batch_size),
        float(wildcards.lr) if lr is None else lr,
        int(wildcards.seed),
    )


def run_settings_json(wildcards) -> str:
    """The run's protocol as JSON: its rule params, so a protocol change re-trains it."""
    return json.dumps(run_settings(CONFIG, run_of(wildcards)), sort_keys=True)


def packed_outputs(experiment: str) -> list[str]:
    """Per-run files a packed job writes: one per learning rate, other wildcards left open."""
    return [
        "results/runs/{experiment}/{dataset}/{model}/bs{batch_size}_lr"
        + format_lr(lr)
        + "_seed{seed}.parquet"
        for lr in CONFIG["experiments"][experiment]["learning_rates"]
    ]


def packed_settings_json(wildcards) -> str:
    """The protocols of a packed job's runs, in the order of its outputs: a JSON list."""
    runs = [
        run_settings(CONFIG, run_of(wildcards, lr))
        for lr in CONFIG["experiments"][wildcards.experiment]["learning_rates"]
    ]
    return json.dumps(runs, sort_keys=True)


def packed_checkpoint_path(wildcards) -> str:
    return (
        f"results/checkpoints/{wildcards.experiment}/{wildcards.dataset}/{wildcards.model}/"
        f"bs{wildcards.batch_size}_seed{wildcards.seed}_packed.pt"
    )


def training_option(key):
    """A non-protocol training setting of the job's experiment (threads, evaluation batch size)."""
    return lambda wildcards: training_settings(CONFIG, wildcards.experiment)[key]


def checkpoint_path(wildcards) -> str:
    """Where a run's per-epoch checkpoint lives: outside results/runs, removed once the run is done."""
    return (
        run_of(wildcards)
        .path.replace("results/runs/", "results/checkpoints/")
        .replace(".parquet", ".pt")
    )


def execution_options_json(wildcards) -> str:
    """How an experiment's training jobs run (never what they compute), as JSON for its options file."""
    settings = training_settings(CONFIG, wildcards.experiment)
    return json.dumps({key: settings[key] for key in EXECUTION_KEYS}, sort_keys=True)


def execution_file(wildcards):
    """The experiment's execution options, an input marked ancient: rewriting it re-trains nothing."""
    return ancient(f"results/execution/{wildcards.experiment}.json")


def job_resource(key):
    """A training job's resource (gpu, mem_mb, runtime) by model and data set, from config or auto."""
    return lambda wildcards: job_resources(
        CONFIG, wildcards.experiment, wildcards.model, wildcards.dataset
    )[key]


def training_data(wildcards) -> list[str]:
    """Data files a training job needs that the workflow itself makes (MNIST-1D)."""
    path = generated_path(wildcards.dataset, CONFIG["data"]["root"])
    return [str(path)] if path else []


def run_files() -> list[str]:
    return [run.path for run in RUNS]


def figure_files(name: str) -> list[str]:
    return [
        f"results/figures/{experiment}/{dataset}/{model}/{name}.{extension}"
        for experiment, dataset, model in scenarios(CONFIG)
        for extension in ("pdf", "png")
    ]


def all_outputs() -> list[str]:
    files = [
        "results/aggregate/runs.parquet",
        "results/aggregate/epochs.parquet",
        "results/stats/correlations.csv",
    ]
    for name in FIGURES:
        files += figure_files(name)
    for name in EXPERIMENT_FIGURES:
        files += [
            f"results/figures/{experiment}/{name}.{extension}"
            for experiment in CONFIG["experiments"]
            for extension in ("pdf", "png")
        ]
    return files
