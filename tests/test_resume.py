"""Nothing lost: resuming from checkpoints, SIGKILL of a real Snakemake job, signals, GPU memory."""

import functools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import bslr.learners
import bslr.train
from bslr import checkpoint
from bslr.config import RunSpec
from bslr.errors import Interrupted, OutOfMemory
from bslr.plan import generated_path
from bslr.progress import last_event
from bslr.storage import RUN_COLUMNS, read_run
from bslr.train import RunOptions, pack_fingerprint, train_pack_to_files
from conftest import REPO, SNAKEMAKE, snakemake, tiny_config, write_config
from tensorboard_api import tensorboard
from test_train import pack, settings, train_one

METRICS = [column for column in RUN_COLUMNS if column != "seconds"]


@functools.cache
def _uninterrupted(runs: str) -> list:
    return bslr.train.train_pack([RunSpec.of(run) for run in json.loads(runs)])


def uninterrupted(runs: list[RunSpec]) -> list:
    """The pack trained without interruption: once per pack in this module, where both interruptions of a
    pack compare with it (the frames are only read)."""
    return _uninterrupted(json.dumps([run.settings() for run in runs], sort_keys=True))


def crash_at_epoch(monkeypatch, epoch: int) -> None:
    """Make the evaluation of `epoch` raise, as if the job died there."""
    real, calls = bslr.train.evaluate, []

    def evaluate(*args):
        calls.append(1)
        if len(calls) >= epoch:
            raise KeyboardInterrupt("killed")
        return real(*args)

    monkeypatch.setattr(bslr.train, "evaluate", evaluate)


def signal_at_step(monkeypatch, step: int) -> None:
    """Send SIGUSR1 to this process during training step number `step` (counted from 1 over epochs)."""
    for learner in (bslr.learners.SerialLearner, bslr.learners.StackedLearner):
        real, calls = learner.step, []

        def counted(self, *args, real=real, calls=calls):
            calls.append(1)
            if len(calls) == step:
                signal.raise_signal(signal.SIGUSR1)
            return real(self, *args)

        monkeypatch.setattr(learner, "step", counted)


def wait_for(path, process, seconds=120):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, "the job ended before writing a checkpoint"
        assert time.monotonic() < deadline, f"no {path} after {seconds} s"
        time.sleep(0.05)


@pytest.mark.parametrize("learner", ["serial", "stacked"])
@pytest.mark.parametrize("size", [1, 3])
@pytest.mark.parametrize("interruption", ["SIGKILL", "SIGUSR1 mid-epoch"])
def test_an_interrupted_pack_resumes_to_the_metrics_of_an_uninterrupted_one(
    mnist1d_root, tmp_path, monkeypatch, capsys, interruption, size, learner
):
    runs = pack(mnist1d_root, lrs=(0.05, 0.1, 0.2)[:size], learner=learner, model="cnn1d", batch_size=32, epochs=4)
    reference = uninterrupted(runs)
    path, outputs = tmp_path / "pack.pt", [str(tmp_path / f"run{index}.parquet") for index in range(size)]
    if interruption == "SIGKILL":  # a real `bslr train` job, killed with no chance to clean up
        command = [
            sys.executable,
            "-m",
            "bslr",
            "train",
            "--settings",
            json.dumps([run.settings() for run in runs]),
            "--output",
            *outputs,
        ]
        process = subprocess.Popen([*command, "--checkpoint", str(path)], stdout=subprocess.DEVNULL)
        wait_for(path, process)
        process.kill()
        assert process.wait() == -signal.SIGKILL
        progress = checkpoint.load(path, pack_fingerprint(runs, learner))["progress"]
        assert 1 <= max(len(rows) for rows in progress["rows"]) < 4
    else:  # 125 steps per epoch: the signal arrives at epoch 2, step 10, and the checkpoint keeps that step
        with monkeypatch.context() as patch:
            signal_at_step(patch, 135)
            with pytest.raises(Interrupted, match="received signal SIGUSR1 in epoch 2"):
                bslr.train.train_pack(runs, RunOptions(checkpoint=str(path)))
        state = checkpoint.load(path, pack_fingerprint(runs, learner))
        assert [len(rows) for rows in state["progress"]["rows"]] == [1] * size and state["progress"]["step"] == 135
        assert state["order_state"] is not None  # the stopped epoch's order, replayed on resuming
    frames = train_pack_to_files(runs, outputs, RunOptions(checkpoint=str(path)))
    assert "resuming from" in capsys.readouterr().err and not path.exists()
    for output, frame, (expected, _) in zip(outputs, frames, reference, strict=True):
        assert read_run(output)[1]["resumed"] == "true"
        pd.testing.assert_frame_equal(frame[METRICS], expected[METRICS], check_exact=True)


BUDGETS = {
    # 400 steps of 125 an epoch (the last epoch partial), evaluated every 50 steps, with the measures at
    # epoch 1 and the end (the fluctuation's window of 100 steps spans the interruption)
    "steps": dict(
        epochs=None,
        budget={"steps": 400},
        evaluation={"every": 50, "unit": "steps"},
        measures=["hessian_trace", "fluctuation", "init_distance"],
        measurement={"subset": 64, "probes": 4, "window": {"length": 100, "unit": "steps"}, "epochs": [1]},
    ),
    # lr 0.2 reaches the target before the interruption, lr 0.02 never does (censored at 375 steps)
    "target": dict(
        epochs=3,
        budget={"target": {"metric": "train_loss", "value": 1.75}},
        evaluation={"every": 25, "unit": "steps"},
        measures=["weight_norm"],
    ),
    # Adam under a warm-up of one epoch, then a cosine to 0 at the last step: the interruption falls in the
    # cosine, whose rate the resumed run must take up at the very step
    "schedule": dict(
        epochs=4,
        lrs=(0.001, 0.003),
        optimizer={"name": "adam", "betas": [0.9, 0.99]},
        weight_decay=1e-4,
        schedule={"decay": "cosine", "unit": "epochs", "warmup": 1},
    ),
}


@pytest.mark.parametrize("budget", ["steps", "target", "schedule"])
@pytest.mark.parametrize("interruption", ["SIGKILL", "SIGUSR1 mid-epoch"])
def test_a_pack_interrupted_mid_budget_resumes_to_the_rows_and_measures_of_an_uninterrupted_one(
    mnist1d_root, tmp_path, monkeypatch, interruption, budget
):
    learner = "stacked" if budget == "steps" or (budget, interruption) == ("schedule", "SIGKILL") else "serial"
    protocol = dict(BUDGETS[budget])
    lrs = protocol.pop("lrs", (0.02, 0.2))
    runs = pack(mnist1d_root, lrs=lrs, learner=learner, model="cnn1d", batch_size=32, **protocol)
    reference = uninterrupted(runs)
    path, outputs = tmp_path / "pack.pt", [str(tmp_path / f"run{index}.parquet") for index in range(2)]
    if interruption == "SIGKILL":
        command = [
            sys.executable,
            "-m",
            "bslr",
            "train",
            "--settings",
            json.dumps([run.settings() for run in runs]),
            "--output",
            *outputs,
        ]
        process = subprocess.Popen([*command, "--checkpoint", str(path)], stdout=subprocess.DEVNULL)
        wait_for(path, process)
        process.kill()
        assert process.wait() == -signal.SIGKILL
    else:
        with monkeypatch.context() as patch:
            signal_at_step(patch, 135)
            with pytest.raises(Interrupted, match="received signal SIGUSR1 in epoch 2"):
                bslr.train.train_pack(runs, RunOptions(checkpoint=str(path)))
    progress = checkpoint.load(path, pack_fingerprint(runs, learner))["progress"]
    assert 125 <= progress["step"] < 375
    if budget == "target":  # the run that reached its target stays ended after resuming
        assert progress["reached"][1] is not None and progress["reached"][0] is None
    frames = train_pack_to_files(runs, outputs, RunOptions(checkpoint=str(path)))
    for output, frame, (expected, metadata) in zip(outputs, frames, reference, strict=True):
        resumed = read_run(output)[1]
        assert resumed["resumed"] == "true" and resumed["reached_target"] == metadata["reached_target"]
        pd.testing.assert_frame_equal(frame.drop(columns="seconds"), expected.drop(columns="seconds"), check_exact=True)
    if budget == "target":
        assert [read_run(output)[1]["reached_target"] for output in outputs] == ["false", "true"]
    if budget == "schedule":  # each row's lr is the rate in force: the peak after the warm-up, 0 at the end
        for lr, (frame, _) in zip(lrs, reference, strict=True):
            assert frame["lr"].iloc[0] == lr and frame["lr"].iloc[-1] == 0 and 0 < frame["lr"].iloc[2] < lr


def test_checkpoint_of_other_settings_is_refused(mnist1d_root, tmp_path, monkeypatch, capsys):
    path = tmp_path / "run.pt"
    with monkeypatch.context() as patch:
        crash_at_epoch(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            train_one(settings(mnist1d_root, epochs=3, lr=0.05), RunOptions(checkpoint=str(path)))
    other = settings(mnist1d_root, epochs=3, lr=0.1)
    frame, metadata = train_one(other, RunOptions(checkpoint=str(path)))
    assert "refusing checkpoint" in capsys.readouterr().err and metadata["resumed"] == "false"
    fresh, _ = train_one(other)
    pd.testing.assert_frame_equal(frame[METRICS], fresh[METRICS], check_exact=True)


def test_checkpoint_is_removed_after_the_parquet_unless_kept(mnist1d_root, tmp_path):
    for keep in (False, True):
        path = tmp_path / f"keep{keep}.pt"
        train_pack_to_files(
            [settings(mnist1d_root, epochs=3)],
            [str(tmp_path / f"{keep}.parquet")],
            RunOptions(checkpoint=str(path), keep_checkpoint=keep),
        )
        assert path.exists() == keep
    # a kept checkpoint loads with weights_only=True: plain tensors and containers only
    state = torch.load(tmp_path / "keepTrue.pt", weights_only=True)
    assert state["settings_hash"] == pack_fingerprint([settings(mnist1d_root, epochs=3)], "serial")


def test_unreadable_checkpoint_is_ignored(mnist1d_root, tmp_path, capsys):
    path = tmp_path / "run.pt"
    path.write_bytes(b"truncated")
    frame, _ = train_one(settings(mnist1d_root), RunOptions(checkpoint=str(path)))
    assert len(frame) == 2 and "ignoring unreadable checkpoint" in capsys.readouterr().err


def test_out_of_memory_names_model_and_batch_size(mnist1d_root, tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(bslr.train, "_train_pack", out_of_memory)
    progress = tmp_path / "progress.jsonl"
    with pytest.raises(OutOfMemory, match="training 1 cnn1d run.s. on mnist1d at batch size 64: run it on a GPU"):
        train_pack_to_files([settings(mnist1d_root)], [str(tmp_path / "run.parquet")], RunOptions(progress=progress))
    assert not (tmp_path / "run.parquet").exists()
    failed = last_event(progress)  # what `bslr status` shows: the advice, not torch's message alone
    assert failed["event"] == "failed" and failed["error"].startswith("GPU out of memory training 1 cnn1d run(s)")
    with pytest.raises(OutOfMemory, match="training 3 mlp run.s. .* use a smaller training.pack.size"):
        train_pack_to_files(pack(mnist1d_root, model="mlp"), [str(tmp_path / f"{i}.parquet") for i in range(3)])


def test_sigterm_stops_cleanly_and_the_rerun_resumes(mnist1d_root, tmp_path):

    run = settings(mnist1d_root, model="cnn1d", epochs=3, batch_size=16)
    output, ckpt = tmp_path / "run.parquet", tmp_path / "run.pt"
    command = [
        sys.executable,
        "-m",
        "bslr",
        "train",
        "--settings",
        json.dumps(run.settings()),
        "--output",
        str(output),
        "--checkpoint",
        str(ckpt),
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    wait_for(ckpt, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    assert "stopped, received signal SIGTERM" in process.stderr.read()
    assert not output.exists()
    subprocess.run(command, check=True, capture_output=True)
    frame, metadata = read_run(output)
    assert metadata["resumed"] == "true"
    reference, _ = train_one(run)
    pd.testing.assert_frame_equal(frame[METRICS], reference[METRICS], check_exact=True)


def test_sigkilled_snakemake_job_resumes_to_identical_metrics(mnist1d_root, tmp_path):
    """Snakemake and its job killed mid-run, then re-run (about 30 s on 2 cores: two Snakemake runs, each job
    importing torch, three epochs); the reference is the same run trained here from the settings it recorded.
    The data are the session's MNIST-1D, which the workflow finds in place and does not generate again."""
    config = tiny_config(models=["cnn1d"], batch_sizes=[16], learning_rates=[0.1], epochs=3)
    config["data"] = {"root": str(mnist1d_root)}
    config_path = write_config(tmp_path, config)
    target = "results/runs/tiny/mnist1d/cnn1d/bs16_lr0.1_seed0.parquet"

    command = [
        *SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(config_path),
        "--cores",
        "1",
        target,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(tmp_path / "results/checkpoints/tiny/mnist1d/cnn1d/bs16_lr0.1_seed0.pt", process)
    os.killpg(process.pid, signal.SIGKILL)  # Snakemake and its training job, with no chance to clean up
    process.wait()
    assert not (tmp_path / target).exists()

    snakemake(tmp_path, config_path, "--unlock")
    snakemake(tmp_path, config_path, "--cores", "1", "--rerun-incomplete", target)
    resumed, metadata = read_run(tmp_path / target)
    assert metadata["resumed"] == "true"
    assert "resuming from" in (tmp_path / "logs/train/tiny/mnist1d/cnn1d/bs16_lr0.1_seed0.log").read_text()
    assert not (tmp_path / "resources").exists()
    data = generated_path("mnist1d", mnist1d_root)
    reference, _ = train_one(RunSpec.of(json.loads(metadata["settings"])), RunOptions(data_file=str(data)))
    pd.testing.assert_frame_equal(resumed[METRICS], reference[METRICS], check_exact=True)
    assert not (tmp_path / "results/checkpoints/tiny/mnist1d/cnn1d/bs16_lr0.1_seed0.pt").exists()


def test_ctrl_c_is_a_stop_its_log_keeps_the_epochs_and_the_rerun_resumes(mnist1d_root, tmp_path):
    """Ctrl-C sends SIGINT to Snakemake's whole process group, its jobs included: each job checkpoints, says
    in one line that it stopped (no KeyboardInterrupt traceback), `bslr status` calls it stopped, and the
    re-run resumes with the log appended, so the epochs before the stop stay in it (about 35 s on 2 cores:
    two Snakemake runs, each job importing torch, the reference run)."""
    from bslr.plan import Plan
    from bslr.status import report

    config = tiny_config(models=["cnn1d"], batch_sizes=[16], learning_rates=[0.1], epochs=3)
    config["data"] = {"root": str(mnist1d_root)}
    config_path = write_config(tmp_path, config)
    target = "results/runs/tiny/mnist1d/cnn1d/bs16_lr0.1_seed0.parquet"
    log = tmp_path / "logs/train/tiny/mnist1d/cnn1d/bs16_lr0.1_seed0.log"
    command = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
    command += ["--configfile", str(config_path), "--cores", "1", target]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(tmp_path / "results/checkpoints/tiny/mnist1d/cnn1d/bs16_lr0.1_seed0.pt", process)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    process.wait(timeout=120)
    stopped = log.read_text()
    assert "bslr train: stopped, received signal SIGINT" in stopped and "epoch 1/3" in stopped
    assert "Traceback" not in stopped and "KeyboardInterrupt" not in stopped
    assert not (tmp_path / target).exists()
    # the progress file and the TensorBoard log were written as it trained, and say how the job ended
    progress = log.with_suffix(".progress.jsonl")
    lines = [json.loads(line) for line in progress.read_text().splitlines()]
    assert lines[1]["event"] == "evaluation" and lines[1]["step"] == 250 and lines[-1]["event"] == "stopped"
    events = EventAccumulator(str(tmp_path / "results/tensorboard/tiny/mnist1d/cnn1d/bs16_lr0.1_seed0"))
    events.Reload()
    assert events.Scalars("accuracy/test")[0].step == 250
    assert "1 stopped" in report(Plan(config), tmp_path)

    snakemake(tmp_path, config_path, "--cores", "1", "--rerun-incomplete", target)
    # Snakemake removes a job's log before it runs again: the resumed job replays its epochs from the checkpoint
    resumed_log = log.read_text()
    before = stopped.splitlines()[0].split(": ", 1)[1]  # epoch 1's metrics, as the stopped job printed them
    assert f"epoch 1/3 (step 250/750, before the stop): {before}" in resumed_log
    assert "resuming from" in resumed_log and "epoch 3/3" in resumed_log
    resumed, metadata = read_run(tmp_path / target)
    assert metadata["resumed"] == "true"
    data = generated_path("mnist1d", mnist1d_root)
    reference, _ = train_one(RunSpec.of(json.loads(metadata["settings"])), RunOptions(data_file=str(data)))
    pd.testing.assert_frame_equal(resumed[METRICS], reference[METRICS], check_exact=True)

    # the progress file and the TensorBoard log tell each evaluation once, those before the stop included
    lines = [json.loads(line) for line in progress.read_text().splitlines()]
    assert [line["event"] for line in lines][0] == "start" and lines[0]["resumed_at"] >= 250
    assert [line["step"] for line in lines if line["event"] == "evaluation"] == [250, 500, 750]
    assert lines[1].get("replayed") and lines[-1]["event"] == "end" and lines[-1]["runs"][0]["state"] == "done"
    with tensorboard(tmp_path / "results/tensorboard/tiny") as board:
        test_acc = board.scalars("mnist1d/cnn1d/bs16_lr0.1_seed0", "accuracy/test")
        session = board.sessions()["mnist1d/cnn1d/bs16_lr0.1_seed0"]
    expected = zip(resumed["step"].tolist(), resumed["test_acc"].astype(np.float32).tolist(), strict=True)
    assert test_acc == list(expected)  # single precision, as TensorBoard holds scalars
    assert session["status"] == "STATUS_SUCCESS" and session["metrics"]["accuracy/test"] == test_acc[-1]
