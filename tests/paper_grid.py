"""A synthetic study shaped like the paper's grid, to draw every figure at the scale it must stay legible at.

4 scenarios (ResNet-110 and VGG-19 on CIFAR-10 and CIFAR-100) x 20 batch sizes (16, 32, ..., 320) x 20
learning rates (0.01, ..., 0.20): 1,600 runs with one seed. Test accuracy falls with log2 of the ratio
batch size / learning rate, train accuracy more steeply (runs at large ratios are under-trained after a
fixed number of epochs, as in the default study); the smallest batch sizes at the largest learning rates
diverge (NaN losses, chance accuracy), 3 runs per scenario.

`adam_runs`: the same kind of table for Adam, whose outcomes depend on its own ratio B/lr^2 alone, on a grid
where batch sizes double and learning rates grow by sqrt(2), so that cells share B/lr^2 (and fewer share B/lr).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bslr.config import optimizer_scaling

SCENARIOS = [
    ("resnet110", "cifar10", 0.93, 10),
    ("resnet110", "cifar100", 0.72, 100),
    ("vgg19", "cifar10", 0.92, 10),
    ("vgg19", "cifar100", 0.70, 100),
]
BATCH_SIZES = tuple(range(16, 321, 16))
LEARNING_RATES = tuple(round(0.01 * step, 2) for step in range(1, 21))


def diverges(batch_size: int, lr: float) -> bool:
    return (batch_size == 16 and lr >= 0.19) or (batch_size == 32 and lr == 0.2)


def paper_runs(
    seeds: tuple[int, ...] = (0,),
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    learning_rates: tuple[float, ...] = LEARNING_RATES,
    scenarios: int = 4,
) -> pd.DataFrame:
    """A runs.parquet-shaped table (see the module docstring)."""
    rng = np.random.default_rng(0)
    rows = []
    for model, dataset, level, classes in SCENARIOS[:scenarios]:
        for batch_size in batch_sizes:
            for lr in learning_rates:
                for seed in seeds:
                    steps = np.log2(batch_size / lr / 80)
                    test_acc = float(np.clip(level - 0.03 * steps + rng.normal(0, 0.008), 0, 1))
                    train_acc = float(np.clip(level + 0.1 - 0.045 * steps + rng.normal(0, 0.008), 0, 1))
                    diverged = diverges(batch_size, lr)
                    if diverged:
                        test_acc = train_acc = 1 / classes
                    rows.append(run_row("paper", model, dataset, batch_size, lr, seed, test_acc, train_acc, diverged))
    return pd.DataFrame(rows)


def run_row(
    experiment: str,
    model: str,
    dataset: str,
    batch_size: int,
    lr: float,
    seed: int,
    test_acc: float,
    train_acc: float,
    diverged: bool = False,
) -> dict:
    """One row of a runs.parquet-shaped table of 20 epochs: its best test accuracy 0.004 above its final one,
    its losses falling with its accuracies (NaN where it diverged)."""
    return dict(
        experiment=experiment,
        model=model,
        dataset=dataset,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        ratio=batch_size / lr,
        epochs=20,
        final_test_acc=test_acc,
        best_test_acc=test_acc + 0.004,
        final_train_acc=train_acc,
        final_test_loss=np.nan if diverged else 2 * (1 - test_acc),
        final_train_loss=np.nan if diverged else 1 - train_acc,
        gap=train_acc - test_acc,
        diverged=diverged,
    )


def paper_epochs(runs: pd.DataFrame, epochs: int = 20) -> pd.DataFrame:
    """An epochs.parquet-shaped table: each run approaches its final accuracies; a diverged run stops at
    epoch 3 with a NaN training loss and chance accuracy."""
    frames = []
    for run in runs.itertuples():
        last = 3 if run.diverged else epochs
        epoch = np.arange(1, last + 1)
        approach = 1 - np.exp(-epoch / 4)
        frame = pd.DataFrame(
            {
                "experiment": run.experiment,
                "model": run.model,
                "dataset": run.dataset,
                "batch_size": run.batch_size,
                "lr": run.lr,
                "seed": run.seed,
                "epoch": epoch,
                "train_loss": 2.3 - (2.3 - (1 - run.final_train_acc)) * approach,
                "train_acc": 0.1 + (run.final_train_acc - 0.1) * approach,
                "test_loss": 2.3 - (2.3 - 2 * (1 - run.final_test_acc)) * approach,
                "test_acc": 0.1 + (run.final_test_acc - 0.1) * approach,
                "seconds": 1.0,
            }
        )
        if run.diverged:
            frame.loc[frame.index[-1], ["train_loss", "test_loss"]] = np.nan
            frame.loc[frame.index[-1], ["train_acc", "test_acc"]] = run.final_test_acc
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


ADAM_BATCH_SIZES = (16, 32, 64, 128, 256)
ADAM_LEARNING_RATES = tuple(1e-3 * np.sqrt(2) ** step for step in range(5))


def with_optimizer(runs: pd.DataFrame, optimizer: str, momentum: float = 0.0) -> pd.DataFrame:
    """`runs` with the columns the aggregate writes for `optimizer` (bslr.config.optimizer_scaling), after `ratio`."""
    pairs = zip(runs["batch_size"], runs["lr"], strict=True)
    scaling = [optimizer_scaling(optimizer, momentum, size, lr) for size, lr in pairs]
    effective_lr, optimizer_ratio, name = (list(values) for values in zip(*scaling, strict=True))
    columns = {"optimizer": optimizer, "effective_lr": effective_lr, "optimizer_ratio": optimizer_ratio}
    runs = runs.copy()
    position = runs.columns.get_loc("ratio") + 1
    for offset, (column, values) in enumerate({**columns, "optimizer_ratio_name": name}.items()):
        runs.insert(position + offset, column, values)
    return runs


def adam_runs(seeds: tuple[int, ...] = (0, 1), scenarios: int = 1) -> pd.DataFrame:
    """A runs.parquet-shaped table of Adam runs (see the module docstring): test accuracy falls by 0.02 per
    doubling of B/lr^2, train accuracy by 0.03, with seed noise of 0.004; nothing diverges."""
    rng = np.random.default_rng(0)
    rows = []
    for model, dataset, level, _ in SCENARIOS[:scenarios]:
        for batch_size in ADAM_BATCH_SIZES:
            for lr in ADAM_LEARNING_RATES:
                for seed in seeds:
                    doublings = np.log2(batch_size / lr**2 / 16e6)  # -4 to 4 over the grid
                    test_acc = level - 0.15 - 0.02 * doublings + rng.normal(0, 0.004)
                    train_acc = level - 0.08 - 0.03 * doublings + rng.normal(0, 0.004)
                    rows.append(run_row("adam", model, dataset, batch_size, lr, seed, test_acc, train_acc))
    return with_optimizer(pd.DataFrame(rows), "adam")
