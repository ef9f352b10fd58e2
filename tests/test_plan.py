"""The plan: torch-free, the one place that knows the grid, the packs and the training paths."""

import json
import math
import re
import subprocess
import sys

import pytest

from bslr.catalog import FIGURE_INPUT_TABLES, FIGURE_SCOPES, FIGURES, figure_names
from bslr.config import RunSpec
from bslr.plan import (
    Plan,
    Run,
    checkpoint_path,
    lrs_text,
    run_keys,
    run_of_path,
)
from conftest import REPO, tiny_config

HEAVY = ("torch", "matplotlib", "seaborn")


def test_planning_the_paper_imports_neither_torch_nor_plotting_libraries(tmp_path):
    """A real `snakemake -n` of the paper's 1,600 runs, with every import it makes listed by Python."""
    command = [sys.executable, "-X", "importtime", "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile")]
    command += ["--directory", str(tmp_path), "--configfile", str(REPO / "config/paper.yaml")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    }
    assert "bslr.plan" in imported and "snakemake" in imported  # the listing is real
    assert not {name for name in imported if name.split(".")[0] in HEAVY}
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout.split("Job stats:")[1], flags=re.MULTILINE))
    # 1,600 runs, execution options, aggregate, stats, 7 figures x 4 scenarios, 3 experiment figures, all
    assert [
        jobs[f"train_paper_{data}_{model}"] for data in ("cifar10", "cifar100") for model in ("resnet110", "vgg19")
    ] == ["400"] * 4
    assert jobs["total"] == str(1600 + 3 + 4 * 7 + 3 + 1)


def test_a_plan_in_process_imports_nothing_heavy():
    code = (
        "import sys, yaml\nfrom bslr.plan import Plan\n"
        f"plan = Plan(yaml.safe_load(open({str(REPO / 'config/paper.yaml')!r})))\n"
        "assert len(plan.runs) == 1600 and plan.train_rules()\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def packing(size, learner="serial", lrs=(0.05, 0.1, 0.15, 0.2, 0.25)) -> Plan:
    config = tiny_config(learning_rates=list(lrs), pack={"size": size, "learner": learner})
    config["experiments"]["alone"] = dict(tiny_config()["experiments"]["tiny"], pack={"size": 1})
    return Plan(config)


def test_packs_are_chunks_of_the_learning_rates_in_config_order():
    assert packing("all").chunks("tiny", "mnist1d", "mlp") == [(0.05, 0.1, 0.15, 0.2, 0.25)]
    assert packing(2).chunks("tiny", "mnist1d", "mlp") == [(0.05, 0.1), (0.15, 0.2), (0.25,)]
    rules = packing(2).train_rules()
    assert [(rule.name, rule.experiment, rule.lrs) for rule in rules] == [
        ("train_tiny_mnist1d_mlp_pack1", "tiny", (0.05, 0.1)),
        ("train_tiny_mnist1d_mlp_pack2", "tiny", (0.15, 0.2)),
        ("train_tiny_mnist1d_mlp_pack3", "tiny", (0.25,)),
        ("train_alone_mnist1d_mlp", "alone", None),
    ]
    assert [rule.name for rule in packing("all").train_rules()][0] == "train_tiny_mnist1d_mlp"
    pack, alone = rules[0], rules[-1]
    assert pack.outputs == [
        "results/runs/tiny/mnist1d/mlp/bs{batch_size}_lr0.05_seed{seed}.parquet",
        "results/runs/tiny/mnist1d/mlp/bs{batch_size}_lr0.1_seed{seed}.parquet",
    ]
    assert pack.log == "logs/train/tiny/mnist1d/mlp/bs{batch_size}_lr0.05-0.1_seed{seed}.log"
    assert alone.outputs == ["results/runs/alone/mnist1d/mlp/bs{batch_size}_lr{lr}_seed{seed}.parquet"]
    assert alone.log == "logs/train/alone/mnist1d/mlp/bs{batch_size}_lr{lr}_seed{seed}.log"
    # everything Snakemake needs per job is fixed when the workflow is parsed (runtime: 10 minutes of margin
    # and ceil(2 runs x 2 epochs x 0.05 min x 1.5))
    assert pack.inputs == ["resources/data/mnist1d/mnist1d.npz"] and pack.execution == "results/execution/tiny.json"
    assert pack.threads == 1 and pack.resources == {"gpu": 0, "gpu_slots": 0, "mem_mb": 2000, "runtime": 11}


def pack_sizes(plan: Plan) -> dict[str, list[int] | None]:
    """Training rule -> the sizes of its packs (None: one run per job, the learning rate a wildcard)."""
    return {rule.name: None if rule.lrs is None else len(rule.lrs) for rule in plan.train_rules()}


def test_by_default_runs_are_packed_into_jobs_of_about_15_minutes_and_long_runs_stay_alone():
    """`pack.size: auto`: a job's imports and data loading (3 to 5 s on a CPU) are paid once for all the runs
    that fit in about 15 minutes of the runtime estimate (1.5 x epochs x the data set's minutes per epoch x
    the model's cost), serial and so bitwise the runs trained alone."""
    # a researcher's first grid: 3 epochs of MNIST-1D (0.225 min a run): each batch size and seed one job
    mine = tiny_config(models=["mlp", "cnn1d"], batch_sizes=[32, 64, 128], learning_rates=[0.05, 0.1, 0.2], epochs=3)
    mine["experiments"]["tiny"]["seeds"] = [0, 1]
    plan = Plan(mine)
    assert pack_sizes(plan) == {"train_tiny_mnist1d_mlp": 3, "train_tiny_mnist1d_cnn1d": 3}
    assert {plan.spec(run).learner for run in plan.runs} == {"serial"}  # the default learner: exact
    # 30 epochs (2.25 min a run): 6 fit in 15 minutes, so 20 learning rates take 4 packs, spread as 5 each
    lrs = [round(0.01 * step, 2) for step in range(1, 21)]
    plan = Plan(tiny_config(learning_rates=lrs, epochs=30))
    assert plan.chunks("tiny", "mnist1d", "mlp") == [tuple(lrs[start : start + 5]) for start in range(0, 20, 5)]
    assert {rule.resources["runtime"] for rule in plan.train_rules()} == {10 + math.ceil(5 * 30 * 0.05 * 1.5)}
    # a stacked pack's learning rates are part of its runs' protocol, which must not follow a time estimate;
    # a runtime given is a job's limit, which a pack could overrun: one run per job for both
    for protocol in ({"pack": {"learner": "stacked"}}, {"pack": {"learner": "auto"}}, {"runtime": 5}):
        plan = Plan(tiny_config(learning_rates=lrs, epochs=30, **protocol))
        assert pack_sizes(plan) == {"train_tiny_mnist1d_mlp": None}
    # the paper's runs (200 epochs of ResNet-110 on CIFAR-10, about 10 hours estimated) stay one per job
    paper = tiny_config(models=["resnet110"], datasets=["cifar10"], epochs=200)
    assert pack_sizes(Plan(paper)) == {"train_tiny_cifar10_resnet110": None}
    # 100 epochs of MNIST-1D (7.5 min a run): two per job
    assert pack_sizes(Plan(tiny_config(epochs=100))) == {
        "train_tiny_mnist1d_mlp_pack1": 2,
        "train_tiny_mnist1d_mlp_pack2": 1,
    }


def test_a_run_without_a_time_estimate_is_a_job_of_its_own(workdir):
    """A config's own model has no estimate (it gives `runtime`): auto leaves its runs one per job."""
    from user_entries import user_config

    config = user_config(
        {"cnn": {"factory": "mynets:small_cnn"}}, {"images": {"format": "npz", "path": "data/images.npz"}}
    )
    assert set(pack_sizes(Plan(config)).values()) == {None}


def test_a_pack_of_one_has_the_paths_of_its_run():
    run = Run("tiny", "mlp", "mnist1d", 64, 0.1, 0)
    assert checkpoint_path([run.path]) == "results/checkpoints/tiny/mnist1d/mlp/bs64_lr0.1_seed0.pt"
    outputs = [Run("tiny", "mlp", "mnist1d", 64, lr, 0).path for lr in (0.05, 0.1, 0.15)]
    assert checkpoint_path(outputs) == "results/checkpoints/tiny/mnist1d/mlp/bs64_lr0.05-0.15_seed0.pt"
    # under a prefix (a Snakemake module's, or another directory), the checkpoint stays beside the runs
    prefixed = [f"study/{path}" for path in outputs]
    assert checkpoint_path(prefixed) == "study/results/checkpoints/tiny/mnist1d/mlp/bs64_lr0.05-0.15_seed0.pt"
    assert lrs_text((0.1,)) == "0.1" and lrs_text((0.01, 0.2)) == "0.01-0.2"


@pytest.mark.parametrize("lr", [0.01, 0.2, 0.1 + 0.2, 1e-5, 3.0])
def test_run_paths_read_back_as_their_runs(lr):
    run = Run("paper", "resnet110", "cifar100", 320, lr, 7)
    assert run_of_path(run.path) == run and run_of_path("/some/dir/" + run.path) == run
    with pytest.raises(ValueError, match="is not a per-run file path"):
        run_of_path("results/runs/paper/cifar100/resnet110/bs320_seed7.parquet")


def test_a_run_is_its_protocol_and_the_keys_of_its_file_name():
    plan = packing(2)
    for run in plan.runs:
        protocol = json.loads(plan.protocol_json(run.experiment))
        assert {**protocol, **run_keys(run.path)} == plan.spec(run).settings()
        assert RunSpec.of(protocol | run_keys(run.path)) == plan.spec(run)


def test_the_job_protocol_leaves_packing_out_for_serial_and_in_for_stacked():
    serial = {packing(size).protocol_json("tiny", lrs) for size in (1, 2, "all") for lrs in (None, (0.05, 0.1))}
    assert len(serial) == 1 and json.loads(serial.pop())["learner"] == "serial"
    stacked = json.loads(packing(2, "stacked").protocol_json("tiny", (0.05, 0.1)))
    assert stacked["pack_learning_rates"] == [0.05, 0.1] and stacked["learner"] == "stacked"
    assert not {"lr", "batch_size", "seed", "model", "dataset", "experiment"} & set(stacked)


def test_every_registered_figure_is_drawn_and_every_drawn_one_registered():
    from bslr.figures import DRAWERS

    assert list(DRAWERS) == list(FIGURES)
    assert all(spec.name == name for name, spec in FIGURES.items())


def test_every_figure_has_its_tables_a_title_and_settings_and_three_files():
    from bslr.config import load_schema

    figure_settings = load_schema()["properties"]["figures"]["properties"]
    for spec in FIGURES.values():
        assert spec.scope in FIGURE_SCOPES and spec.drawn in ("always", "measured", "budgets")
        assert spec.tables and set(spec.tables) <= set(FIGURE_INPUT_TABLES) and spec.title
        assert spec.name in figure_settings
        assert (REPO / f"workflow/report/{spec.name}.rst").is_file() or spec.scope == "study"  # its report caption
    assert {table for spec in FIGURES.values() for table in spec.tables} == set(FIGURE_INPUT_TABLES)
    names = figure_names(drawn="always")
    plan = Plan(tiny_config())
    assert all(plan.figure_settings(name)["dpi"] == (60 if name == "heatmap" else 200) for name in names)
    files = plan.figure_files()
    assert len(files) == 3 * len(names) and "results/figures/tiny/mnist1d/mlp/heatmap.csv" in files


@pytest.mark.parametrize("learner", ["serial", "stacked", "auto"])
def test_the_settings_a_trained_run_records_are_the_ones_the_plan_compares_against(learner):
    """What a training job records for each run (its rule's protocol and the keys of its file name, as `bslr
    train` reads them) is what the plan expects of a trained run, so that unchanged results are never
    reported as replaced: under a stacked pack the pack's learning rates are part of it."""
    from bslr.config import RunSpec
    from bslr.plan import Plan, run_keys

    plan = Plan(tiny_config(pack={"size": "all", "learner": learner}))
    protocols = {(rule.experiment, rule.dataset, rule.model, rule.lrs): rule.protocol for rule in plan.train_rules()}
    for run in plan.runs:
        protocol = protocols[(run.experiment, run.dataset, run.model, plan.pack_lrs(run))]
        recorded = RunSpec.of(json.loads(protocol) | run_keys(run.path)).settings()
        assert plan.trained_settings(run) == recorded
        assert ("pack_learning_rates" in recorded) == (learner != "serial")
