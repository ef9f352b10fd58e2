import json

import numpy as np
import pandas as pd
import pytest

from bslr.aggregate import RUNS_COLUMNS, aggregate
from bslr.storage import RUN_COLUMNS, RunFileError, write_table


def fake_run(path, batch_size, lr, test_acc, train_acc, seed=0, diverged=False):
    epochs = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [2.0, 1.0, np.nan if diverged else 0.5],
            "train_acc": [0.3, 0.6, train_acc],
            "test_loss": [2.1, 1.2, 0.7],
            "test_acc": [0.3, 0.9, test_acc],
            "lr": lr,
            "batch_size": batch_size,
            "seconds": 0.1,
        },
        columns=RUN_COLUMNS,
    )
    settings = dict(experiment="e", model="mlp", dataset="mnist1d", batch_size=batch_size, lr=lr, seed=seed)
    write_table(epochs, path, {"settings": json.dumps(settings), "diverged": json.dumps(diverged)})
    return path


def test_runs_table_summarises_each_run(tmp_path):
    paths = [
        fake_run(tmp_path / "b.parquet", 32, 0.1, test_acc=0.8, train_acc=0.95),
        fake_run(tmp_path / "a.parquet", 16, 0.2, test_acc=0.85, train_acc=0.9, diverged=True),
    ]
    runs, epochs = aggregate(paths)
    assert list(runs.columns) == RUNS_COLUMNS
    assert runs["batch_size"].tolist() == [16, 32]  # sorted by the run keys
    first = runs.iloc[0]
    assert first["ratio"] == pytest.approx(80.0)
    assert first["final_test_acc"] == 0.85 and first["best_test_acc"] == 0.9
    assert first["gap"] == pytest.approx(0.9 - 0.85)
    assert first["epochs"] == 3
    assert bool(first["diverged"]) and not bool(runs.iloc[1]["diverged"])
    assert len(epochs) == 6
    assert {"experiment", "model", "dataset", "seed", "epoch", "test_acc"} <= set(epochs.columns)


def test_corrupt_run_file_is_named_with_the_fix(tmp_path):
    good = fake_run(tmp_path / "good.parquet", 16, 0.1, 0.8, 0.9)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(good.read_bytes()[:100])
    with pytest.raises(RunFileError, match=r"bad\.parquet is unreadable .*delete .*bad\.parquet and re-run snakemake"):
        aggregate([good, bad])


def test_foreign_parquet_is_refused(tmp_path):
    foreign = tmp_path / "foreign.parquet"
    pd.DataFrame({"epoch": [1], "accuracy": [0.5]}).to_parquet(foreign)
    with pytest.raises(RunFileError, match="foreign.parquet lacks columns"):
        aggregate([foreign])
