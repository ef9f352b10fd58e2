"""The workflow on a real SLURM cluster through profiles/slurm.

Runs wherever SLURM is usable: a controller that already answers `squeue`, or, as root, a throwaway
single-node cluster started here (tests/slurm/cluster.py). Under CI=true, Debian's slurm-wlm and munge
are installed first when missing. Elsewhere the tests are skipped, saying why.
"""

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from bslr.storage import read_run
from conftest import REPO, snakemake, tiny_config, write_config

sys.path.insert(0, str(Path(__file__).parent / "slurm"))
import cluster  # noqa: E402

FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "2"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if cluster.controller_answers():
        yield None  # a cluster is already running here: use it as it is
        return
    if os.geteuid() != 0:
        pytest.skip("no SLURM controller answers squeue, and starting a test cluster needs root")
    if cluster.missing_binaries():
        if os.environ.get("CI") != "true":
            pytest.skip(
                f"SLURM is not installed ({', '.join(cluster.missing_binaries())} missing); CI=true installs it"
            )
        cluster.install()
    started = cluster.start(tmp_path_factory.mktemp("slurm"))
    yield started
    cluster.stop(started)


def grid_config() -> dict:
    return tiny_config(batch_sizes=[64, 128], learning_rates=[0.05, 0.1], pack={"size": 1})  # a job per run


def slurm_job_ids(workdir: Path) -> dict[str, str]:
    files = sorted((workdir / "results/runs").rglob("*.parquet"))
    return {path.name: read_run(path)[1]["slurm_job_id"] for path in files}


def test_every_training_run_is_a_slurm_job(slurm, tmp_path):
    """The workflow through the SLURM executor up to the statistics and a figure (about 50 s on 2 cores): four
    SLURM jobs, each starting Python and importing torch, the executor's status checks between them (every
    2 s, 10 s longer at each check that finds no job finished), then the statistics and the figure on the
    submitting machine, as every local rule (the other figures' rules are the same rule, with other settings).
    (One run for both tests, with a second experiment grouped, took 180 s: the checks back off further.)"""
    config_path = write_config(tmp_path, grid_config())
    figure = "results/figures/tiny/mnist1d/mlp/heatmap.pdf"
    targets = ["results/stats/correlations.csv", figure]
    snakemake(tmp_path, config_path, "--profile", str(REPO / "profiles/slurm"), *FAST_STATUS, *targets)
    job_ids = slurm_job_ids(tmp_path)
    assert len(job_ids) == 4
    assert all(job_id.isdigit() for job_id in job_ids.values()), job_ids
    assert len(set(job_ids.values())) == 4  # one SLURM job per run
    runs = pd.read_parquet(tmp_path / "results/aggregate/runs.parquet")
    assert len(runs) == 4 and not runs["diverged"].any()
    assert (tmp_path / "results/stats/correlations.csv").is_file()
    assert list((tmp_path / "results/figures").rglob("*.pdf")) == [tmp_path / figure]  # run on the submitting machine
    assert not list((tmp_path / "results/checkpoints").rglob("*.pt"))


def test_grouping_packs_training_runs_into_one_slurm_job(slurm, tmp_path):
    """Four training runs as one grouped SLURM job, up to the runs table (about 80 s on 2 cores, most of it
    the group's four runs one after another and the executor waiting between status checks)."""
    config_path = write_config(tmp_path, grid_config())
    grouping = ["--groups", "train_tiny_mnist1d_mlp=train", "--group-components", "train=4", "--cores", "2"]
    snakemake(
        tmp_path,
        config_path,
        "--profile",
        str(REPO / "profiles/slurm"),
        *FAST_STATUS,
        *grouping,
        "results/aggregate/runs.parquet",
    )
    job_ids = slurm_job_ids(tmp_path)
    assert len(job_ids) == 4 and len(set(job_ids.values())) == 1, job_ids
    assert next(iter(job_ids.values())).isdigit()
