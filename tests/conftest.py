"""Shared helpers: tiny configs and real Snakemake runs in temporary directories."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def tiny_config(**experiment_overrides) -> dict:
    """Nine MLP runs of two epochs on MNIST-1D: enough for every statistic to be defined."""
    experiment = {
        "models": ["mlp"],
        "datasets": ["mnist1d"],
        "batch_sizes": [64, 128, 256],
        "learning_rates": {"start": 0.05, "stop": 0.15, "step": 0.05},
        "seeds": [0],
        "epochs": 2,
    }
    experiment.update(experiment_overrides)
    return {"experiments": {"tiny": experiment}, "figures": {"heatmap": {"dpi": 60}}}


def write_config(directory: Path, config: dict, name: str = "config.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, config_path: Path | None, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the repository's workflow with `workdir` as its working directory."""
    command = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    if config_path is not None:
        command += ["--configfile", str(config_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def planned_jobs(workdir: Path, config_path: Path | None, *args: str) -> dict[str, int]:
    """Rule name -> number of jobs that `snakemake -n` plans (empty when nothing is to be done)."""
    result = snakemake(workdir, config_path, "-n", *args)
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    return {
        match.group(1): int(match.group(2))
        for match in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE)
        if match.group(1) != "total"
    }


def training_jobs(jobs: dict[str, int]) -> int:
    """Training jobs among `planned_jobs`: one rule per (experiment, data set, model[, pack])."""
    return sum(count for rule, count in jobs.items() if rule.startswith("train_"))


@pytest.fixture(scope="session")
def mnist1d_root(tmp_path_factory) -> Path:
    """A data.root with MNIST-1D generated once for the whole test session."""
    from bslr.data import prepare_mnist1d
    from bslr.plan import generated_path

    root = tmp_path_factory.mktemp("data")
    prepare_mnist1d(generated_path("mnist1d", root))
    return root


@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory) -> Path:
    """A working directory in which the tiny grid has been run once through `snakemake --cores 2`."""
    workdir = tmp_path_factory.mktemp("workflow")
    config_path = write_config(workdir, tiny_config())
    result = snakemake(workdir, config_path, "--cores", "2")
    (workdir / "snakemake.out").write_text(result.stdout + result.stderr)
    return workdir


def exact_spearman(x, y):
    """scipy's own exact permutation test of Spearman's rho, as the reference for small groups."""
    import numpy as np
    from scipy import stats

    return stats.permutation_test(
        (np.asarray(x, dtype=float),),
        lambda permuted: stats.spearmanr(permuted, y).statistic,
        permutation_type="pairings",
        n_resamples=np.inf,
    )
