"""`bslr stats` at the paper's scale: a synthetic 1,600-run table, timed end to end.

The table has the paper's shape: 4 scenarios (ResNet-110 and VGG-19 on CIFAR-10 and CIFAR-100) x 20 batch
sizes (16, 32, ..., 320) x 20 learning rates (0.01, ..., 0.20), one seed. Accuracy falls with log2 of the
ratio batch size / learning rate, with scenario-specific levels and noise; runs at the smallest batch size
and the two largest learning rates diverge (NaN losses, chance accuracy), as small batches at large rates
do. The statistics run with the default analysis settings (every method and outcome, 1,000 bootstrap
resamples, 9,999 permutations) in a fresh process, so the time includes Python's start and the imports.

    python benchmarks/stats_scale.py                 # the paper's grid
    python benchmarks/stats_scale.py --grid 5        # a 5 x 5 grid, for a quick check

Prints the wall time and checks that no p-value is 0 in the tables (exit status 1 if one is).
Speed is measured here, never in tests.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bslr.plan import STATS_OUTPUTS

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = [("resnet110", "cifar10", 0.93), ("resnet110", "cifar100", 0.72), ("vgg19", "cifar10", 0.92)]
SCENARIOS.append(("vgg19", "cifar100", 0.70))
P_COLUMNS = {"correlations": ["p_value", "p_holm", "p_bh"], "headline": ["p_value", "p_holm"]}
P_COLUMNS |= {"regression": ["p_batch_size", "p_lr", "p_beyond_ratio"], "stratified": ["p_value"]}


def synthetic_runs(grid: int, seed: int = 0) -> pd.DataFrame:
    """One run per (scenario, batch size, learning rate); see the module docstring."""
    rng = np.random.default_rng(seed)
    batch_sizes = 16 * np.arange(1, grid + 1)
    learning_rates = np.round(0.01 * np.arange(1, grid + 1), 2)
    rows = []
    for model, dataset, level in SCENARIOS:
        for batch_size in batch_sizes:
            for lr in learning_rates:
                ratio = batch_size / lr
                accuracy = float(np.clip(level - 0.02 * np.log2(ratio / 80) + rng.normal(0, 0.01), 0, 1))
                diverged = bool(batch_size == batch_sizes[0] and lr >= learning_rates[-2])
                train_acc = min(1.0, accuracy + 0.08)
                rows.append(
                    dict(
                        experiment="paper",
                        model=model,
                        dataset=dataset,
                        batch_size=int(batch_size),
                        lr=float(lr),
                        seed=0,
                        ratio=ratio,
                        epochs=200,
                        final_test_acc=0.1 if diverged else accuracy,
                        best_test_acc=accuracy + 0.005,
                        final_train_acc=train_acc,
                        final_test_loss=np.nan if diverged else 2 * (1 - accuracy),
                        final_train_loss=np.nan if diverged else 1 - train_acc,
                        gap=train_acc - (0.1 if diverged else accuracy),
                        diverged=diverged,
                    )
                )
    return pd.DataFrame(rows)


def zero_p_values(stats_dir: Path) -> list[str]:
    """Where a p-value is 0 in the CSV outputs, or a table prints one as 0."""
    found = []
    for name, columns in P_COLUMNS.items():
        table = pd.read_csv(stats_dir / f"{name}.csv")
        for column in columns:
            count = int((table[column] == 0).sum())
            if count:
                found.append(f"{name}.csv {column}: {count} zeros")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", type=int, default=20, help="batch sizes and learning rates per axis")
    parser.add_argument("--output-dir", type=Path, help="keep the outputs here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.output_dir or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        runs = synthetic_runs(args.grid)
        runs.to_parquet(root / "runs.parquet")
        command = [sys.executable, "-m", "bslr", "stats", "--runs", str(root / "runs.parquet")]
        command += ["--outcomes", "final_test_acc", "best_test_acc", "gap"]
        command += ["--methods", "pearson", "spearman", "kendall", "--bootstrap-resamples", "1000"]
        command += ["--permutations", "9999", "--output"]
        command += [f"{name}={root / path}" for name, path in STATS_OUTPUTS.items()]
        environment = os.environ | {
            "PYTHONPATH": os.pathsep.join([str(REPO / "workflow"), os.environ.get("PYTHONPATH", "")])
        }
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=environment)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            print(result.stdout, result.stderr, sep="\n", file=sys.stderr)
            return result.returncode
        zeros = zero_p_values(root / "results/stats")
        correlations = pd.read_csv(root / STATS_OUTPUTS["csv"])
        print(
            f"bslr stats on {len(runs):,} runs ({len(SCENARIOS)} scenarios x {args.grid} batch sizes x {args.grid} "
            f"learning rates, {int(runs['diverged'].sum())} diverged): {seconds:.1f} s wall, "
            f"{len(correlations)} correlation rows, {os.cpu_count()} CPUs"
        )
        print(f"smallest p-value {correlations['p_value'].min():.3g}; " + ("; ".join(zeros) or "no p-value is 0"))
    return 1 if zeros else 0


if __name__ == "__main__":
    sys.exit(main())
