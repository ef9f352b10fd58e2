"""`bslr status` on the paper's grid while it trains: 1,600 runs, a job per run, against `bslr validate`,
which plans the same grid and reads nothing else (the floor: Python, the config, the plan).

The tree is synthetic but in the true formats, written by bslr's own writers: half the runs done (a per-run
Parquet with its metadata, 40 of them diverged), a quarter in progress (a progress file of 100 evaluations,
the last line what status reads), 40 failed and 40 stopped, the rest pending. Each command runs `--repeats`
times in turn in a fresh process; the medians and their ratio are printed (the target: about a second).

    python benchmarks/status.py
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from bslr.config import read_config_files
from bslr.errors import Interrupted, OutOfMemory
from bslr.plan import Plan
from bslr.progress import ProgressFile, run_entry
from bslr.status import pack_files
from bslr.storage import RUN_COLUMNS, write_table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from planning import timed  # noqa: E402


def paper_tree(root: Path) -> Path:
    """The paper's config (a job per run) and a tree of its runs in every state; returns the config's path."""
    config = read_config_files([str(REPO / "config/paper.yaml")])
    config_path = root / "paper.yaml"
    config_path.write_text(yaml.safe_dump(config))
    plan = Plan(config)
    metrics = dict(train_loss=0.5, train_acc=0.9, test_loss=0.7, test_acc=0.8)
    for index, run in enumerate(plan.runs):
        share = index % 40
        if share < 20:  # done
            rows = [
                [epoch, 0.5, 0.9, 0.7, 0.8, run.lr, run.batch_size, 60.0, epoch * 100, epoch * 100 * 16]
                for epoch in range(1, 201)
            ]
            metadata = {"settings": "{}", "diverged": "true" if index % 40 == 0 else "false"}
            write_table(pd.DataFrame(rows, columns=RUN_COLUMNS), root / run.path, metadata)
        elif share < 32:  # training, failed or stopped
            progress = ProgressFile(pack_files(plan, run, root).progress, [run.lr])
            progress.start(steps=20000, epochs=200, resumed_at=0)
            for epoch in range(1, 101):
                progress.evaluation(epoch * 100, epoch, [run_entry(run.lr, "training", metrics)], 60.0, 6000.0)
            if share == 30:
                progress.close(OutOfMemory("GPU out of memory training 1 resnet110 run(s)"))
            elif share == 31:
                progress.close(Interrupted("received signal SIGUSR1 after epoch 100"), stopped=True)
            else:
                progress.close()
    return config_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        config_path = paper_tree(root)
        bslr = [sys.executable, "-m", "bslr"]
        commands = {
            "bslr validate (the plan alone)": [*bslr, "validate", str(config_path)],
            "bslr status": [*bslr, "status", "--configfile", str(config_path), "--directory", str(root)],
        }
        print(subprocess.run(commands["bslr status"], capture_output=True, text=True, check=True).stdout[:200])
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                times[name].append(timed(command, root))
    print(f"1,600 runs of config/paper.yaml, median of {args.repeats} runs each, in turn:")
    for name, values in times.items():
        print(f"  {name}: {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})")
    floor, status = (statistics.median(values) for values in times.values())
    print(f"  status beyond the plan: {status - floor:.2f} s; ratio status / validate: {status / floor:.2f}")


if __name__ == "__main__":
    main()
