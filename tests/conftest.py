"""Shared helpers: tiny configs and real Snakemake runs in temporary directories."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# Under pytest-xdist, a worker's share of the cores for torch's (OpenMP) thread pool, and for the jobs it
# starts: torch's default of a thread per core in every worker oversubscribes the machine, where each
# tiny operation's threads then wait for one another. Tests that need a thread count set their own.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


# Expensive inputs that tests share, and the modules of the tests that take each. Under pytest-xdist a session
# or module fixture is built once per worker, so each such module runs whole on one worker (one scope of the
# scheduler below), and the input is built once per test run; every other test is scheduled on its own.
# (pytest-xdist's own `xdist_group` marks work by renaming node ids, which pytest 9 no longer allows.)
SHARED_INPUT_MODULES = {
    "tiny_workflow": ("test_workflow.py", "test_status.py", "test_tensorboard.py"),
    "module_run": ("test_workflow.py",),
    "slurm": ("test_slurm.py",),
    "paper": ("test_figures.py",),
    "small": ("test_figures.py",),
    "uninterrupted references (functools.cache)": ("test_resume.py",),
}
MODULE_SCOPES = {module: "shared-" + modules[0] for modules in SHARED_INPUT_MODULES.values() for module in modules}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that takes a shared input from a module not listed with it would build the input again."""
    for item in items:
        module = item.path.name
        for fixture in getattr(item, "fixturenames", ()):
            if fixture in SHARED_INPUT_MODULES and module not in SHARED_INPUT_MODULES[fixture]:
                raise pytest.UsageError(f"{item.nodeid} takes {fixture}: list {module} with it in SHARED_INPUT_MODULES")


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Load scheduling with the modules of one shared input as one scope, every other test as its own."""
    from xdist.scheduler import LoadScopeScheduling

    class SharedInputScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return MODULE_SCOPES.get(nodeid.split("::", 1)[0].rsplit("/", 1)[-1], nodeid)

    return SharedInputScheduling(config, log)


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


# A job in Snakemake's job graph (`--dag`, Graphviz DOT): labelled with its rule's name (then its wildcards),
# drawn dashed when it need not run. The graph lists jobs one per node in a format Graphviz reads, where the
# "Job stats" table of `-n` is a summary for people; `--summary` lists output files, not jobs.
DAG_NODE = re.compile(r'^\s*\d+\[label = "(\w+)(?:\\n[^"]*)?", color = "[^"]*", style="([^"]*)"\];$', re.MULTILINE)


def planned_jobs(workdir: Path, config_path: Path | None, *args: str) -> dict[str, int]:
    """Rule name -> number of jobs Snakemake would run (empty when nothing is to be done), from its job graph."""
    result = snakemake(workdir, config_path, "--dag", "dot", *args)
    nodes = DAG_NODE.findall(result.stdout)
    if not nodes:  # a graph has at least the target's job: no node read means the format is not what we read
        raise AssertionError(f"no job read from snakemake --dag:\n{result.stdout}\n{result.stderr}")
    return dict(Counter(rule for rule, style in nodes if "dashed" not in style.split(",")))


def training_jobs(jobs: dict[str, int]) -> int:
    """Training jobs among `planned_jobs`: one rule per (experiment, data set, model[, pack])."""
    return sum(count for rule, count in jobs.items() if rule.startswith("train_"))


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """The directory Snakemake would run in, made the cwd: a module of the user's models (`mynets`) and an npz
    data set (`data/images.npz`) from `user_entries`."""
    from user_entries import write_models_module, write_npz

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    write_models_module(tmp_path)
    write_npz(tmp_path / "data" / "images.npz")
    return tmp_path


@pytest.fixture(scope="session")
def mnist1d_root(tmp_path_factory) -> Path:
    """A data.root with MNIST-1D generated once for the whole test session."""
    from bslr.data import prepare_mnist1d
    from bslr.plan import generated_path

    root = tmp_path_factory.mktemp("data")
    prepare_mnist1d(generated_path("mnist1d", root))
    return root


# The shared run packs each batch size's learning rates into one job (3 jobs, not 9: each job imports torch).
# Under the serial learner each run computes exactly as if alone, so how runs are packed re-trains nothing:
# a config of `tiny_config()` and this one plan the same runs against its results.
SHARED_PACK = {"size": "all", "learner": "serial"}


@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory) -> Path:
    """A working directory in which the tiny grid has been run once through `snakemake --cores 2`: every test
    that only reads the workflow's outputs, or plans against them, shares it. About 70 s on 2 cores: three
    training jobs (each importing torch), the statistics and ten figure jobs (each importing matplotlib)."""
    workdir = tmp_path_factory.mktemp("workflow")
    config_path = write_config(workdir, tiny_config(pack=SHARED_PACK))
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


def rank_numerators(rank_x, rank_y, method: str):
    """Integer numerators of Spearman's rho (twice the centred rank products) or Kendall's tau (concordant
    minus discordant pairs) of rank_x against each row of rank_y. A pairing's p needs no more: the
    denominators do not change when one side is permuted."""
    import numpy as np

    if method == "spearman":  # midranks are multiples of 1/2: twice the centred ranks are integers
        return (2 * rank_y).astype(np.int64) @ (2 * rank_x - (len(rank_x) + 1)).astype(np.int64)
    first, second = np.triu_indices(len(rank_x), 1)
    sign_x = np.sign(rank_x[first] - rank_x[second]).astype(np.int64)
    return np.sign(rank_y[..., first] - rank_y[..., second]).astype(np.int64) @ sign_x


def enumerated_p(x, y, method: str) -> float:
    """Two-sided p over every pairing, enumerating all n! permutations with itertools (not scipy): twice
    the smaller fraction of pairings as far out as the observed one, either side, capped at 1."""
    import itertools
    import math

    import numpy as np
    from scipy import stats

    rank_x, rank_y = stats.rankdata(np.asarray(x, dtype=float)), stats.rankdata(np.asarray(y, dtype=float))
    n = len(rank_x)
    order = np.fromiter(itertools.chain.from_iterable(itertools.permutations(range(n))), np.int8, math.factorial(n) * n)
    numerators = np.concatenate(
        [rank_numerators(rank_x, rank_y[chunk], method) for chunk in np.array_split(order.reshape(-1, n), 8)]
    )
    observed = rank_numerators(rank_x, rank_y, method)
    return min(1.0, 2 * min((numerators >= observed).mean(), (numerators <= observed).mean()))
