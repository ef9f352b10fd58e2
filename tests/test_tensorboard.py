"""TensorBoard logs of a grid, read back through a real TensorBoard server's HTTP API."""

from __future__ import annotations

import numpy as np

from bslr.cli import main
from bslr.plan import run_of_path
from bslr.storage import read_run, run_spec_of
from bslr.tensorboard import BEST, GAP, SCALARS, hyperparameters
from tensorboard_api import tensorboard


def single(value: float) -> float:
    """A value as TensorBoard's scalars hold it (single precision)."""
    return float(np.float32(value))


def test_tensorboard_serves_every_run_with_its_hyperparameters_final_metrics_and_each_evaluation(
    tiny_workflow, tmp_path, capsys
):
    """The tiny grid, logged live by its training jobs, and the same runs exported from their Parquet files by
    `bslr export tensorboard`, served by one TensorBoard (`--logdir_spec live:...,export:...`): every run has
    its hyperparameters, its final metrics and one point per evaluation, and the two logs agree exactly (about
    10 s: the server's start and loading)."""
    runs = tiny_workflow / "results/runs"
    exported = tmp_path / "exported"
    assert main(["export", "tensorboard", str(runs), "--logdir", str(exported)]) == 0
    assert f"wrote the TensorBoard logs of 9 of 9 runs under {exported}" in capsys.readouterr().out
    assert main(["export", "tensorboard", str(runs), "--logdir", str(exported)]) == 0
    assert "of 0 of 9 runs" in capsys.readouterr().out  # written once; --replace writes them again

    live_dir = tiny_workflow / "results/tensorboard/tiny"
    with tensorboard(logdir_spec=f"live:{live_dir},export:{exported / 'tiny'}", runs=18) as board:
        served = board.everything()
    assert len(served["sessions"]) == 18

    files = sorted(runs.rglob("*.parquet"))
    assert len(files) == 9
    for path in files:
        frame, metadata = read_run(path)
        run = run_spec_of(metadata, path)
        key = run_of_path(str(path))
        name = f"live/{key.dataset}/{key.model}/bs{key.batch_size}_lr{key.lr:g}_seed{key.seed}"
        session = served["sessions"][name]
        assert session["hparams"] == {
            hparam: float(value) if isinstance(value, int | float) else value
            for hparam, value in hyperparameters(run).items()
        }
        assert session["hparams"]["ratio"] == key.batch_size / key.lr and session["hparams"]["experiment"] == "tiny"
        assert session["status"] == "STATUS_SUCCESS"
        last = frame.iloc[-1]
        assert session["metrics"]["accuracy/test"] == (int(last["step"]), single(last["test_acc"]))
        assert session["metrics"][BEST] == (int(last["step"]), single(frame["test_acc"].max()))
        scalars = served["scalars"][name]
        steps = [int(step) for step in frame["step"]]
        for column, tag in SCALARS.items():
            assert scalars[tag] == [(step, single(value)) for step, value in zip(steps, frame[column], strict=True)]
        gaps = frame["train_acc"] - frame["test_acc"]
        assert scalars[GAP] == [(step, single(value)) for step, value in zip(steps, gaps, strict=True)]
        assert len(steps) == 2 and set(scalars) == {*SCALARS.values(), GAP, BEST}  # no measures in this grid

        exported_name = name.replace("live/", "export/", 1)
        assert served["scalars"][exported_name] == scalars
        assert served["sessions"][exported_name] == session


def test_export_refuses_a_missing_path_and_a_log_directory_among_the_run_files(tmp_path, capsys):
    assert main(["export", "tensorboard", str(tmp_path / "nowhere")]) == 1
    assert f"bslr export: error: {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err
    (tmp_path / "results/runs").mkdir(parents=True)
    assert main(["export", "tensorboard", str(tmp_path / "results/runs"), "--logdir", "results/runs/tb"]) == 1
    assert "--logdir results/runs/tb is inside results/runs, among the per-run files" in capsys.readouterr().err
