"""Nothing lost: resuming from checkpoints, SIGKILL of a real Snakemake job, signals, GPU memory."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

import bslr.train
from bslr import checkpoint
from bslr.errors import Interrupted, OutOfMemory
from bslr.storage import RUN_COLUMNS, read_run
from bslr.train import RunOptions, train_run, train_to_file
from conftest import REPO, SNAKEMAKE, snakemake, tiny_config, write_config
from test_train import settings

METRICS = [column for column in RUN_COLUMNS if column != "seconds"]


def crash_at_epoch(monkeypatch, epoch: int) -> None:
    """Make the evaluation of `epoch` raise, as if the job died there."""
    real, calls = bslr.train.evaluate, []

    def evaluate(*args):
        calls.append(args[2])
        if len(calls) > 2 * (epoch - 1):
            raise KeyboardInterrupt("killed")
        return real(*args)

    monkeypatch.setattr(bslr.train, "evaluate", evaluate)


def test_resumed_run_equals_an_uninterrupted_one(mnist1d_root, tmp_path, monkeypatch, capsys):
    run = settings(mnist1d_root, model="cnn1d", epochs=4, batch_size=32)
    reference, _ = train_run(run)
    path = tmp_path / "run.pt"
    with monkeypatch.context() as patch:
        crash_at_epoch(patch, 3)
        with pytest.raises(KeyboardInterrupt):
            train_run(run, RunOptions(checkpoint=str(path)))
    assert len(checkpoint.load(path, checkpoint.settings_hash(run))["rows"]) == 2
    resumed, metadata = train_run(run, RunOptions(checkpoint=str(path)))
    assert "resuming from" in capsys.readouterr().err and metadata["resumed"] == "true"
    pd.testing.assert_frame_equal(resumed[METRICS], reference[METRICS], check_exact=True)


def test_checkpoint_of_other_settings_is_refused(mnist1d_root, tmp_path, monkeypatch, capsys):
    path = tmp_path / "run.pt"
    with monkeypatch.context() as patch:
        crash_at_epoch(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            train_run(settings(mnist1d_root, epochs=3, lr=0.05), RunOptions(checkpoint=str(path)))
    other = settings(mnist1d_root, epochs=3, lr=0.1)
    frame, metadata = train_run(other, RunOptions(checkpoint=str(path)))
    assert "refusing checkpoint" in capsys.readouterr().err and metadata["resumed"] == "false"
    fresh, _ = train_run(other)
    pd.testing.assert_frame_equal(frame[METRICS], fresh[METRICS], check_exact=True)


def test_checkpoint_is_removed_after_the_parquet_unless_kept(mnist1d_root, tmp_path):
    for keep in (False, True):
        path = tmp_path / f"keep{keep}.pt"
        train_to_file(
            settings(mnist1d_root, epochs=3),
            str(tmp_path / f"{keep}.parquet"),
            RunOptions(checkpoint=str(path), keep_checkpoint=keep),
        )
        assert path.exists() == keep
    # a kept checkpoint loads with weights_only=True: plain tensors and containers only
    state = torch.load(tmp_path / "keepTrue.pt", weights_only=True)
    assert state["settings_hash"] == checkpoint.settings_hash(settings(mnist1d_root, epochs=3))


def test_unreadable_checkpoint_is_ignored(mnist1d_root, tmp_path, capsys):
    path = tmp_path / "run.pt"
    path.write_bytes(b"truncated")
    frame, _ = train_run(settings(mnist1d_root), RunOptions(checkpoint=str(path)))
    assert len(frame) == 2 and "ignoring unreadable checkpoint" in capsys.readouterr().err


def test_out_of_memory_names_model_and_batch_size(mnist1d_root, tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(bslr.train, "train_run", out_of_memory)
    with pytest.raises(OutOfMemory, match="training cnn1d on mnist1d at batch size 64: run it on a GPU with more"):
        train_to_file(settings(mnist1d_root), str(tmp_path / "run.parquet"))
    assert not (tmp_path / "run.parquet").exists()


def wait_for(path, process, seconds=120):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, "the job ended before writing a checkpoint"
        assert time.monotonic() < deadline, f"no {path} after {seconds} s"
        time.sleep(0.05)


def test_sigterm_stops_cleanly_and_the_rerun_resumes(mnist1d_root, tmp_path):
    import json

    run = settings(mnist1d_root, model="cnn1d", epochs=6, batch_size=16)
    output, ckpt = tmp_path / "run.parquet", tmp_path / "run.pt"
    command = [
        sys.executable,
        "-m",
        "bslr",
        "train",
        "--settings",
        json.dumps(run),
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
    reference, _ = train_run(run)
    pd.testing.assert_frame_equal(frame[METRICS], reference[METRICS], check_exact=True)


def test_sigkilled_snakemake_job_resumes_to_identical_metrics(tmp_path):
    config = tiny_config(models=["cnn1d"], batch_sizes=[16], learning_rates=[0.1], epochs=6)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    for directory in (killed, clean):
        directory.mkdir()
        write_config(directory, config)
    target = "results/runs/tiny/mnist1d/cnn1d/bs16_lr0.1_seed0.parquet"

    command = [
        *SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(killed),
        "--configfile",
        str(killed / "config.yaml"),
        "--cores",
        "1",
        target,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(killed / "results/checkpoints/tiny/mnist1d/cnn1d/bs16_lr0.1_seed0.pt", process)
    os.killpg(process.pid, signal.SIGKILL)  # Snakemake and its training job, with no chance to clean up
    process.wait()
    assert not (killed / target).exists()

    snakemake(killed, killed / "config.yaml", "--unlock")
    snakemake(killed, killed / "config.yaml", "--cores", "1", "--rerun-incomplete", target)
    snakemake(clean, clean / "config.yaml", "--cores", "1", target)
    resumed, metadata = read_run(killed / target)
    reference, _ = read_run(clean / target)
    assert metadata["resumed"] == "true"
    assert "resuming from" in (killed / "logs/train/tiny/mnist1d/cnn1d/bs16_lr0.1_seed0.log").read_text()
    pd.testing.assert_frame_equal(resumed[METRICS], reference[METRICS], check_exact=True)
    assert not (killed / "results/checkpoints/tiny/mnist1d/cnn1d/bs16_lr0.1_seed0.pt").exists()


def test_signal_mid_epoch_checkpoints_that_step_and_resumes_identically(mnist1d_root, tmp_path, monkeypatch):
    run = settings(mnist1d_root, model="cnn1d", epochs=3, batch_size=32)
    reference, _ = train_run(run)
    path = tmp_path / "run.pt"
    real, calls = bslr.train.F.cross_entropy, []

    def cross_entropy(*args, **kwargs):
        calls.append(1)
        if len(calls) == 150:  # epoch 2 (125 training steps and 5 evaluation batches per epoch)
            signal.raise_signal(signal.SIGTERM)
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(bslr.train.F, "cross_entropy", cross_entropy)
        with pytest.raises(Interrupted, match="received signal SIGTERM in epoch 2"):
            train_run(run, RunOptions(checkpoint=str(path)))
    state = checkpoint.load(path, checkpoint.settings_hash(run))
    assert len(state["rows"]) == 1 and state["partial"]["step"] == 20
    resumed, _ = train_run(run, RunOptions(checkpoint=str(path)))
    pd.testing.assert_frame_equal(resumed[METRICS], reference[METRICS], check_exact=True)
