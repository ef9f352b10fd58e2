"""`bslr status`: every state a run can be in, read from disk without torch."""

import re
import subprocess
import sys

import pandas as pd

from bslr.cli import main
from bslr.plan import Run
from bslr.storage import RUN_COLUMNS, write_table
from conftest import tiny_config, write_config


def run_file(root, run: Run, diverged: bool) -> None:
    steps = 60000 // run.batch_size  # one epoch
    row = [1, 2.3, 0.1, 2.3, 0.1, run.lr, run.batch_size, 1.0, steps, steps * run.batch_size]
    frame = pd.DataFrame([row], columns=RUN_COLUMNS)
    write_table(frame, root / run.path, {"settings": "{}", "diverged": "true" if diverged else "false"})


def log_file(root, run: Run, text: str) -> None:
    path = root / f"logs/train/tiny/mnist1d/mlp/bs{run.batch_size}_lr{run.lr:g}_seed0.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def tree_with_every_state(root) -> None:
    runs = {
        (run.batch_size, run.lr): run
        for run in (Run("tiny", "mlp", "mnist1d", b, lr, 0) for b in (64, 128, 256) for lr in (0.05, 0.1, 0.15))
    }
    run_file(root, runs[64, 0.05], diverged=False)
    run_file(root, runs[64, 0.1], diverged=False)
    run_file(root, runs[64, 0.15], diverged=True)
    benchmark = root / "results/benchmarks/train/tiny/mnist1d/mlp/bs64_lr0.05_seed0.tsv"
    benchmark.parent.mkdir(parents=True)
    benchmark.write_text("s\th:m:s\tmax_rss\n30.0\t0:00:30\t100\n")
    epoch = "epoch 1/2 (1.0 s, about 1 s left): lr 0.05: train loss 2.3 acc 0.1, test loss 2.3 acc 0.1\n"
    log_file(root, runs[128, 0.05], epoch)
    log_file(root, runs[128, 0.1], epoch + "bslr train: error: GPU out of memory training 1 mlp run(s)\n")
    log_file(root, runs[128, 0.15], epoch + "bslr train: stopped, received signal SIGUSR1 in epoch 2; re-running\n")
    checkpoint = root / "results/checkpoints/tiny/mnist1d/mlp/bs256_lr0.05_seed0.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"a checkpoint")


def test_status_names_every_state_maps_it_and_estimates_the_time_left(tmp_path, capsys):
    config = write_config(tmp_path, tiny_config(pack={"size": 1}))  # a job per run: a log per run
    tree_with_every_state(tmp_path)
    assert main(["status", "--configfile", str(config), "--directory", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "9 runs: 2 done, 1 diverged, 2 in progress, 1 stopped, 1 failed, 2 pending" in out
    assert "tiny / mnist1d / mlp: 2 done, 1 diverged, 2 in progress, 1 stopped, 1 failed, 2 pending" in out
    assert "  bs  64 ##D\n  bs 128 >xs\n  bs 256 >..\n" in out
    problems = [line for line in out.splitlines() if line.startswith("  ") and ": bs " in line]
    assert problems[0].startswith("  failed: bs 128 lr 0.1 seed 0: bslr train: error: GPU out of memory")
    assert problems[1].startswith("  stopped: bs 128 lr 0.15 seed 0: bslr train: stopped, received signal SIGUSR1")
    assert problems[2] == "  in progress: bs 128 lr 0.05 seed 0: epoch 1/2, log written 0 min ago"
    assert problems[3].startswith("  in progress: bs 256 lr 0.05 seed 0: checkpoint ")
    assert len(problems) == 4
    assert "time left: about 3 min 00 s of job time" in out  # 6 runs not done x 30 s measured per run


def test_a_finished_workflow_prints_its_summary(tiny_workflow):
    printed = (tiny_workflow / "snakemake.out").read_text()
    assert "bslr: 9 runs in results/aggregate/runs.parquet (0 diverged)" in printed
    assert "headline, spearman of final_test_acc against batch size / learning rate (diverged runs excluded)" in printed
    assert re.search(r"  tiny / mnist1d / mlp: -?\d\.\d{3}, n = 9 cells, p = \S+, Holm p = \S+", printed)
    assert "figures in results/figures/, tables in results/tables/" in printed


def test_status_of_a_finished_workflow_and_without_torch(tiny_workflow):
    arguments = ["status", "--configfile", str(tiny_workflow / "config.yaml"), "--directory", str(tiny_workflow)]
    code = (
        f"import sys\nfrom bslr.cli import main\nmain({arguments!r})\n"
        "heavy = [name for name in sys.modules if name.split('.')[0] in ('torch', 'matplotlib', 'seaborn')]\n"
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "9 runs: 9 done" in result.stdout and "every run is done" in result.stdout
    assert f"config files read (later ones win): {tiny_workflow / 'config.yaml'}" in result.stdout
