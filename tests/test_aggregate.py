import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from bslr.aggregate import RUNS_COLUMNS, aggregate
from bslr.storage import RUN_COLUMNS, RunFileError, read_run, write_table
from test_train import settings as run_settings

OPTIMIZER_COLUMNS = ["optimizer", "effective_lr", "optimizer_ratio", "optimizer_ratio_name"]


def fake_run(path, batch_size, lr, test_acc, train_acc, seed=0, diverged=False, settings=None, **metadata):
    """A per-run file of three epochs; `settings` replaces some of the run's settings (an optimizer, say)."""
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
            "step": [10, 20, 30],
            "samples_seen": [10 * batch_size, 20 * batch_size, 30 * batch_size],
        },
        columns=RUN_COLUMNS,
    )
    run = dataclasses.replace(run_settings("unused", "mlp", batch_size, lr, seed), experiment="e", **(settings or {}))
    write_table(epochs, path, {"settings": json.dumps(run.settings()), "diverged": json.dumps(diverged), **metadata})
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
    assert first["budget"] == "epochs" and first["steps"] == 30
    assert runs["reached_target"].isna().all() and runs["target_step"].isna().all()  # no target, no censoring
    assert runs["hessian_trace"].isna().all()  # not measured
    assert len(epochs) == 6
    assert {"experiment", "model", "dataset", "seed", "epoch", "test_acc"} <= set(epochs.columns)


def test_each_run_carries_its_optimizers_own_ratio_after_the_papers(tmp_path):
    """Plain SGD, SGD with momentum and Adam: the optimizer, its effective learning rate and its own ratio with
    that ratio's name, as bslr.config.optimizer_scaling defines them."""
    adam = {"name": "adam", "betas": [0.9, 0.999], "eps": 1e-8}
    paths = [
        fake_run(tmp_path / "a.parquet", 16, 0.1, 0.8, 0.9),
        fake_run(tmp_path / "b.parquet", 32, 0.1, 0.8, 0.9, settings={"momentum": 0.9}),
        fake_run(tmp_path / "c.parquet", 64, 0.001, 0.8, 0.9, settings={"optimizer": adam}),
    ]
    runs, _ = aggregate(paths)
    after_ratio = RUNS_COLUMNS.index("ratio") + 1
    assert RUNS_COLUMNS[after_ratio : after_ratio + 4] == OPTIMIZER_COLUMNS
    columns = runs.set_index("batch_size")[OPTIMIZER_COLUMNS]
    assert columns.loc[16].tolist() == ["sgd", 0.1, pytest.approx(160.0), "B/lr"]
    assert columns.loc[32].tolist() == ["sgd", pytest.approx(1.0), pytest.approx(32.0), "B(1-m)/lr"]
    assert columns.loc[64].tolist() == ["adam", 0.001, pytest.approx(64 / 0.001**2), "B/lr^2"]


def test_a_target_budget_records_which_runs_reached_it_and_when(tmp_path):
    reached = {"reached_target": "true", "target_step": "20"}
    censored = {"reached_target": "false", "target_step": "null"}
    paths = [
        fake_run(tmp_path / "a.parquet", 16, 0.1, 0.8, 0.9, **reached),
        fake_run(tmp_path / "b.parquet", 32, 0.1, 0.7, 0.8, **censored),
    ]
    runs, _ = aggregate(paths)
    assert runs["reached_target"].tolist() == [True, False]
    assert runs["target_step"].iloc[0] == 20 and pd.isna(runs["target_step"].iloc[1])
    assert runs["target_step"].dtype == "Int64" and runs["reached_target"].dtype == "boolean"


def test_a_run_file_from_before_budgets_reads_as_whole_epochs(tmp_path):
    """Files written before `step` existed are read with the steps their whole epochs took."""
    path = fake_run(tmp_path / "old.parquet", 32, 0.1, 0.8, 0.9)
    frame = pd.read_parquet(path).drop(columns=["step", "samples_seen"])
    write_table(frame, path, {key.decode(): value.decode() for key, value in pq_metadata(path).items()})
    epochs, _ = read_run(path)
    assert epochs["step"].tolist() == [125, 250, 375]  # 4,000 MNIST-1D examples in batches of 32
    assert epochs["samples_seen"].tolist() == [4000, 8000, 12000]
    runs, _ = aggregate([path])
    assert runs["steps"].tolist() == [375]


def pq_metadata(path):
    import pyarrow.parquet as pq

    return pq.read_schema(path).metadata


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


def test_the_epochs_table_keeps_each_runs_evaluations_in_step_order_with_its_budget(tmp_path):
    """Evaluated every N steps, a run has several rows in one epoch: the table orders them by step."""
    path = fake_run(tmp_path / "a.parquet", 16, 0.1, 0.8, 0.9)
    frame = pd.read_parquet(path).assign(epoch=[1, 1, 1], step=[30, 10, 20])
    frame["samples_seen"] = frame["step"] * 16
    write_table(frame, path, {key.decode(): value.decode() for key, value in pq_metadata(path).items()})
    fake_run(tmp_path / "b.parquet", 32, 0.1, 0.8, 0.9)
    _, epochs = aggregate([tmp_path / "b.parquet", path])
    assert epochs["step"].tolist() == [10, 20, 30, 10, 20, 30] and epochs["batch_size"].tolist() == [16] * 3 + [32] * 3
    assert (epochs["budget"] == "epochs").all()
