"""`bslr status`: every state a run can be in, read from disk without torch."""

import re
import subprocess
import sys
import time

import pandas as pd

from bslr.cli import main
from bslr.errors import Interrupted, OutOfMemory
from bslr.plan import Run
from bslr.progress import ProgressFile, run_entry
from bslr.status import state_of
from bslr.storage import RUN_COLUMNS, write_table
from conftest import tiny_config, write_config


def run_file(root, run: Run, diverged: bool) -> None:
    steps = 60000 // run.batch_size  # one epoch
    row = [1, 2.3, 0.1, 2.3, 0.1, run.lr, run.batch_size, 1.0, steps, steps * run.batch_size]
    frame = pd.DataFrame([row], columns=RUN_COLUMNS)
    write_table(frame, root / run.path, {"settings": "{}", "diverged": "true" if diverged else "false"})


def progress_file(root, run: Run) -> ProgressFile:
    """The job's progress file, as its training job writes it (a job per run: `pack.size: 1`)."""
    path = root / f"logs/train/tiny/mnist1d/mlp/bs{run.batch_size}_lr{run.lr:g}_seed0.progress.jsonl"
    progress = ProgressFile(path, [run.lr])
    progress.start(steps=2 * (4000 // run.batch_size), epochs=2, resumed_at=0)
    return progress


def evaluation(progress: ProgressFile, run: Run, state: str = "training", since: int | None = None) -> None:
    metrics = dict(train_loss=2.3, train_acc=0.1, test_loss=2.3, test_acc=0.1)
    steps = 4000 // run.batch_size
    progress.evaluation(steps, 1, [run_entry(run.lr, state, metrics, since)], seconds=1.0, left=12.0)


def tree_with_every_state(root) -> dict[tuple[int, float], Run]:
    """Runs done, diverged (one with its file, one whose job says so), training, failed, stopped, with only a
    checkpoint (a job of an earlier version), and pending."""
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

    running = progress_file(root, runs[128, 0.05])
    evaluation(running, runs[128, 0.05])
    failed = progress_file(root, runs[128, 0.1])
    evaluation(failed, runs[128, 0.1])
    failed.close(OutOfMemory("GPU out of memory training 1 mlp run(s) on mnist1d at batch size 128"))
    stopped = progress_file(root, runs[128, 0.15])
    evaluation(stopped, runs[128, 0.15])
    stopped.close(Interrupted("received signal SIGUSR1 in epoch 2"), stopped=True)
    diverged = progress_file(root, runs[256, 0.05])
    evaluation(diverged, runs[256, 0.05], "diverged", since=15)
    diverged.end(15, [run_entry(0.05, "diverged", None, 15)])
    diverged.close()
    checkpoint = root / "results/checkpoints/tiny/mnist1d/mlp/bs256_lr0.1_seed0.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"a checkpoint")
    return runs


def test_status_names_every_state_from_the_progress_files_whatever_the_logs_say(tmp_path, capsys):
    config = write_config(tmp_path, tiny_config(pack={"size": 1}))  # a job per run: a progress file per run
    runs = tree_with_every_state(tmp_path)
    assert main(["status", "--configfile", str(config), "--directory", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "9 runs: 2 done, 2 diverged, 2 in progress, 1 stopped, 1 failed, 1 pending" in out
    assert "tiny / mnist1d / mlp: 2 done, 2 diverged, 2 in progress, 1 stopped, 1 failed, 1 pending" in out
    assert "  bs  64 ##D\n  bs 128 >xs\n  bs 256 D>.\n" in out
    problems = [line for line in out.splitlines() if line.startswith("  ") and ": bs " in line]
    assert problems == [
        "  failed: bs 128 lr 0.1 seed 0: GPU out of memory training 1 mlp run(s) on mnist1d at batch size 128",
        "  stopped: bs 128 lr 0.15 seed 0: received signal SIGUSR1 in epoch 2",
        "  in progress: bs 128 lr 0.05 seed 0: epoch 1/2 (step 31/62), about 12 s left, written 0 min ago",
        f"  in progress: bs 256 lr 0.1 seed 0: checkpoint {tmp_path}/results/checkpoints/tiny/mnist1d/mlp/"
        "bs256_lr0.1_seed0.pt",
    ]
    # the running job's own estimate, and 4 runs not started or to resume x 30 s measured per run
    assert (
        "time left: about 2 min 12 s of job time, from the running jobs' estimates and the finished jobs' pace" in out
    )

    # logs saying the opposite of every state (errors, stops, epochs) change nothing reported
    for run in (run for key, run in runs.items() if key != (256, 0.15)):  # every job but the pending run's
        log = tmp_path / f"logs/train/tiny/mnist1d/mlp/bs{run.batch_size}_lr{run.lr:g}_seed0.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("epoch 9/9 (step 1/1): Traceback\nbslr train: stopped, received signal SIGTERM\nerror: Killed\n")
    assert main(["status", "--configfile", str(config), "--directory", str(tmp_path)]) == 0
    assert capsys.readouterr().out == out


def test_status_of_packs_reads_each_run_s_state_in_its_job_s_last_line(tmp_path, capsys):
    """Packs of three: a job stopped after one run diverged and another reached its target, a resumed job
    before its first new evaluation, a job whose training is over and whose files are being written."""
    config = write_config(tmp_path, tiny_config(pack={"size": "all", "learner": "serial"}))
    metrics = dict(train_loss=2.3, train_acc=0.1, test_loss=2.3, test_acc=0.1)
    lrs = [0.05, 0.1, 0.15]

    def job(batch_size: int) -> ProgressFile:
        path = tmp_path / f"logs/train/tiny/mnist1d/mlp/bs{batch_size}_lr0.05-0.15_seed0.progress.jsonl"
        return ProgressFile(path, lrs)

    stopped = job(64)
    stopped.start(steps=124, epochs=2, resumed_at=0)
    entries = [run_entry(0.05, "training", metrics), run_entry(0.1, "reached", metrics, 62)]
    stopped.evaluation(62, 1, [*entries, run_entry(0.15, "diverged", None, 20)], seconds=1.0, left=1.0)
    stopped.close(Interrupted("received signal SIGTERM in epoch 2"), stopped=True)
    resumed = job(128)
    resumed.start(steps=62, epochs=2, resumed_at=31)
    resumed.replayed(31, 1, [run_entry(lr, "reached" if lr == 0.1 else "training", metrics, 31) for lr in lrs])
    trained = job(256)
    trained.start(steps=30, epochs=2, resumed_at=0)
    trained.end(30, [run_entry(lr, "done", None) for lr in lrs])
    started = {"event": "start", "time": time.time(), "job": [0.1], "steps": 250, "epochs": 2, "resumed_at": 0}
    assert state_of(started, 0.1) == ("in progress", "started 0 min ago, no evaluation yet (250 steps)", None)
    assert state_of(started, 0.2) is None  # a line of a job that trained other learning rates under this name

    assert main(["status", "--configfile", str(config), "--directory", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "9 runs: 1 diverged, 6 in progress, 2 stopped" in out
    assert "  bs  64 ssD\n  bs 128 >>>\n  bs 256 >>>\n" in out
    problems = [line for line in out.splitlines() if line.startswith("  ") and ": bs " in line]
    assert problems[0] == "  stopped: bs 64 lr 0.05-0.15 seed 0: received signal SIGTERM in epoch 2"
    assert problems[1].startswith("  in progress: bs 128 lr 0.05-0.15 seed 0: epoch 1/2 (step 31/62), resumed (")
    assert problems[2].startswith(
        "  in progress: bs 128 lr 0.05-0.15 seed 0: reached its target at step 31, epoch 1/2 (step 31/62), resumed"
    )
    assert problems[3].startswith("  in progress: bs 256 lr 0.05-0.15 seed 0: trained (0 min ago); its file is being")
    assert len(problems) == 4


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
