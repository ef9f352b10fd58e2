"""Collect per-run Parquet files into one table of runs and one table of epochs.

The epochs table holds every evaluation row of every run (several per epoch where a run is evaluated every N
steps), in step order within each run, with the run's keys and its budget (`epochs`, `steps` or `target`),
so that a figure can tell the paper's protocol from the others without the runs table.

Beside the paper's ratio batch size / learning rate, each run carries its optimizer's own
(`bslr.config.optimizer_scaling`): the effective learning rate and the ratio that optimizer's theory says governs
it, with its name (B/lr^2 for Adam), so that the statistics and figures can test and draw it as they do the
paper's."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from bslr.budget import budget_kind
from bslr.catalog import MEASURE_COLUMNS
from bslr.config import RunSpec
from bslr.storage import read_run, run_spec_of

KEYS = ["experiment", "model", "dataset", "batch_size", "lr", "seed"]
# The measures' columns: their values at the end of the run (NaN where not measured, or diverged).
MEASURES = [column for columns in MEASURE_COLUMNS.values() for column in columns]
RUNS_COLUMNS = (
    KEYS
    + [
        "ratio",
        "optimizer",
        "effective_lr",
        "optimizer_ratio",
        "optimizer_ratio_name",
        "epochs",
        "final_test_acc",
        "best_test_acc",
        "final_train_acc",
        "final_test_loss",
        "final_train_loss",
        "gap",
        "diverged",
    ]
    + ["budget", "steps", "reached_target", "target_step"]
    + MEASURES
)


def summarise(epochs: pd.DataFrame, run: RunSpec, diverged: bool, metadata: dict[str, str] | None = None) -> dict:
    """One row of runs.parquet: the run's keys, its ratios (the paper's and its optimizer's own), its final and
    best metrics, its budget and how it ended
    (`reached_target`: null without a target or for a diverged run, false for a censored one), and its final
    measures."""
    last, metadata = epochs.iloc[-1], metadata or {}
    reached, target_step = (json.loads(metadata.get(key, "null")) for key in ("reached_target", "target_step"))
    effective_lr, optimizer_ratio, optimizer_ratio_name = run.scaling
    return {
        **{key: getattr(run, key) for key in KEYS},
        "ratio": run.batch_size / run.lr,
        "optimizer": run.optimizer["name"],
        "effective_lr": effective_lr,
        "optimizer_ratio": optimizer_ratio,
        "optimizer_ratio_name": optimizer_ratio_name,
        "epochs": int(last["epoch"]),
        "final_test_acc": float(last["test_acc"]),
        "best_test_acc": float(epochs["test_acc"].max()),
        "final_train_acc": float(last["train_acc"]),
        "final_test_loss": float(last["test_loss"]),
        "final_train_loss": float(last["train_loss"]),
        "gap": float(last["train_acc"] - last["test_acc"]),
        "diverged": diverged or not np.isfinite(last["train_loss"]),
        "budget": budget_kind(run.budget),
        "steps": int(last["step"]),
        "reached_target": pd.NA if reached is None else reached,
        "target_step": pd.NA if target_step is None else target_step,
        **{column: float(last[column]) if column in last else np.nan for column in MEASURES},
    }


def aggregate(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (runs, epochs), sorted by the run keys (and the epochs table by step within each run) so that
    rebuilt tables are identical."""
    run_rows, epoch_frames = [], []
    for path in paths:
        epochs, metadata = read_run(path)
        run = run_spec_of(metadata, path)
        run_rows.append(summarise(epochs, run, metadata.get("diverged") == "true", metadata))
        keyed = epochs.assign(
            **{key: getattr(run, key) for key in KEYS if key not in epochs}, budget=budget_kind(run.budget)
        )
        epoch_frames.append(keyed)
    runs = pd.DataFrame(run_rows, columns=RUNS_COLUMNS).sort_values(KEYS, ignore_index=True)
    runs = runs.astype({"reached_target": "boolean", "target_step": "Int64"})
    empty = pd.DataFrame(columns=KEYS + ["epoch", "step"])
    epochs = pd.concat(epoch_frames, ignore_index=True) if epoch_frames else empty
    epoch_columns = KEYS + [column for column in epochs.columns if column not in KEYS]
    epochs = epochs[epoch_columns].sort_values(KEYS + ["step"], ignore_index=True, kind="stable")
    return runs, epochs
