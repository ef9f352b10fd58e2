"""The training core: one loop trains a pack of runs (K >= 1 runs that differ only in learning rate).

Plain SGD at a constant learning rate, evaluated on the full training and test sets every epoch. The data
sit on the training device as tensors; each epoch draws a seeded permutation and walks it in batches of
exactly `batch_size` (the last, smaller batch is dropped so that every step of SGD sees the batch size
under study). The seed fixes the initial weights and the data order, so runs that differ only in batch
size or learning rate start from the same weights. How the K models compute is the learner's business
(`bslr.learners`); everything else (resume, signals, divergence, provenance, the per-run files) is here,
once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import bslr
from bslr import checkpoint
from bslr.catalog import DATASETS
from bslr.config import resolve_learner
from bslr.data import LoaderData, MemoryData, load_dataset
from bslr.engine import claim_gpu, configure_backends, resolve_device, resolve_engine
from bslr.errors import ConfigError, Interrupted, OutOfMemory
from bslr.learners import Learner, build_learner
from bslr.models import build_model
from bslr.storage import RUN_COLUMNS, write_table


def provenance(settings: dict[str, Any], device: torch.device, threads: int) -> dict[str, str]:
    """Key-value metadata of a per-run Parquet: what ran, with what, where."""
    return {
        "settings": json.dumps(settings, sort_keys=True),
        "bslr_version": bslr.__version__,
        "torch_version": torch.__version__,
        "cuda_version": str(torch.version.cuda),
        "python_version": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "threads": str(threads),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
        "slurm_node": os.environ.get("SLURMD_NODENAME", ""),
    }


@dataclass(frozen=True)
class RunOptions:
    """How a run is executed, never what it computes: none of these changes a CPU run's metrics."""

    threads: int = 1
    eval_batch_size: int = 1000
    workers: int = 8
    checkpoint: str | None = None  # resume from and save to this file every epoch
    keep_checkpoint: bool = False
    deterministic: bool = False  # deterministic CUDA kernels (CPU runs are deterministic anyway)
    generated_data: str | None = None  # a generated data set's file (MNIST-1D) where the workflow put it


class StopRequest:
    """Set by SIGTERM or SIGUSR1 (a scheduler's time limit or preemption); training checks it after each
    step, so the checkpoint it then writes never holds a half-applied update."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.signal_name = signal.Signals(signum).name


@contextlib.contextmanager
def training_device(settings: dict[str, Any], options: RunOptions) -> Iterator[torch.device]:
    """The device a job trains on, set up for it: CPU threads, a claimed GPU (see `claim_gpu`),
    cuDNN autotuning for the fixed batch shapes, or deterministic kernels when asked."""
    torch.set_num_threads(options.threads)
    device = resolve_device(settings["device"])
    if device.type != "cuda":
        yield device
        return
    with claim_gpu() as index:
        torch.cuda.set_device(index)
        if options.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = not options.deterministic
        yield torch.device("cuda", index)


def load_training_data(settings: dict[str, Any], device: torch.device, options: RunOptions) -> MemoryData | LoaderData:
    return load_dataset(
        settings["dataset"],
        settings["data_root"],
        settings["download"],
        settings["augment"],
        device,
        seed=settings["seed"],
        workers=options.workers,
        generated=options.generated_data,
    )


def initial_model(settings: dict[str, Any], device: torch.device) -> torch.nn.Module:
    """The seeded initial weights: the same for every batch size and learning rate of a seed."""
    spec = DATASETS[settings["dataset"]]
    torch.manual_seed(settings["seed"])
    return build_model(settings["model"], spec.input_shape, spec.num_classes, settings["mlp_hidden"]).to(device)


def data_generators(settings: dict[str, Any], data: MemoryData | LoaderData) -> dict[str, torch.Generator | None]:
    """What a run draws its data from: the seeded batch order, and the augmentation (None without)."""
    return {
        "order": torch.Generator().manual_seed(settings["seed"]),
        "augment": getattr(data, "augment_generator", None),
    }


def resume_point(state: dict[str, Any], generators: dict[str, torch.Generator | None]) -> tuple[int, float]:
    """Restore a checkpoint's random states; return where its epoch goes on (step, seconds spent in it)."""
    checkpoint.restore_rng(state["rng"], generators)
    if not state["partial"]:
        return 0, 0.0
    generators["order"].set_state(state["partial"]["order_state"])  # replay the stopped epoch's order
    return state["partial"]["step"], state["partial"]["seconds"]


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """While training runs, SIGTERM and SIGUSR1 set a flag instead of ending the process."""
    stop = StopRequest()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def check_pack(runs: list[dict[str, Any]]) -> None:
    """A pack is runs that differ in their learning rate and nothing else."""
    if not runs:
        raise ConfigError("a pack needs at least one run")
    first = {key: value for key, value in runs[0].items() if key != "lr"}
    for settings in runs[1:]:
        rest = {key: value for key, value in settings.items() if key != "lr"}
        if rest != first:
            differing = sorted(key for key in first.keys() | rest.keys() if first.get(key) != rest.get(key))
            raise ConfigError(f"packed runs must differ only in lr, but these settings differ too: {differing}")
    lrs = [settings["lr"] for settings in runs]
    if len(set(lrs)) != len(lrs):
        raise ConfigError(f"packed runs need distinct learning rates, got {lrs}")


def train_epoch(
    learner: Learner,
    data: MemoryData | LoaderData,
    batch_size: int,
    order_generator: torch.Generator,
    start_step: int = 0,
    stop: StopRequest | None = None,
) -> int | None:
    """One epoch of SGD from `start_step`. Returns None when done, or the steps done if a stop was asked."""
    for step, (inputs, labels) in enumerate(data.train_batches(batch_size, order_generator, start_step), start_step):
        learner.step(inputs, labels)
        if stop is not None and stop.signal_name:
            return step + 1
    return None


def evaluate(learner: Learner, data: MemoryData | LoaderData, batch_size: int) -> list[dict[str, float]]:
    """Each run's loss and accuracy on the whole training and test sets."""
    train, test = (learner.evaluate(data, split, batch_size) for split in ("train", "test"))
    return [
        dict(train_loss=train_loss, train_acc=train_acc, test_loss=test_loss, test_acc=test_acc)
        for (train_loss, train_acc), (test_loss, test_acc) in zip(train, test, strict=True)
    ]


def train_pack(
    runs: list[dict[str, Any]], options: RunOptions = RunOptions()
) -> list[tuple[pd.DataFrame, dict[str, str]]]:
    """Train a pack to its last epoch and return each run's epochs and metadata, in the order of `runs`.

    A run whose training loss becomes NaN or infinite stops there (its file ends at that epoch); the others
    go on. With a checkpoint path, the pack resumes from the last finished epoch (or the step a signal
    stopped it at) found there and saves after every epoch, so a killed job loses at most one epoch and
    ends with the same metrics.
    """
    check_pack(runs)
    with training_device(runs[0], options) as device:
        return _train_pack(runs, options, device)


def _train_pack(
    runs: list[dict[str, Any]], options: RunOptions, device: torch.device
) -> list[tuple[pd.DataFrame, dict[str, str]]]:
    settings, lrs = runs[0], [run["lr"] for run in runs]
    data = load_training_data(settings, device, options)
    engine = resolve_engine(settings, device, len(DATASETS[settings["dataset"]].input_shape))
    configure_backends(engine)
    learner_name = resolve_learner(settings["learner"], len(runs))
    learner = build_learner(learner_name, initial_model(settings, device), runs, engine)
    generators = data_generators(settings, data)

    rows: list[list[dict[str, Any]]] = [[] for _ in runs]
    diverged: list[int | None] = [None] * len(runs)
    start_step, epoch_seconds = 0, 0.0
    fingerprint = checkpoint.settings_hash({"runs": runs, "learner": learner_name})
    state = checkpoint.load(options.checkpoint, fingerprint) if options.checkpoint else None
    if state is not None:
        learner.load(state["learner"])
        rows, diverged = state["rows"], state["diverged"]
        start_step, epoch_seconds = resume_point(state, generators)
        done = max(len(run_rows) for run_rows in rows)
        print(f"resuming from {options.checkpoint} after epoch {done}, step {start_step}", file=sys.stderr)

    def save_checkpoint(partial: dict[str, Any] | None = None) -> None:
        checkpoint.save(
            options.checkpoint,
            {
                "settings_hash": fingerprint,
                "rows": rows,
                "diverged": diverged,
                "partial": partial,
                "learner": learner.state(),
                "rng": checkpoint.capture_rng(generators),
            },
        )

    epochs = settings["epochs"]
    first_epoch = max(len(run_rows) for run_rows in rows) + 1
    trained = time.perf_counter()
    with stop_requests() as stop:
        for epoch in range(first_epoch, epochs + 1):
            if not any(learner.active):
                break
            started = time.perf_counter()
            order_state = generators["order"].get_state()  # before the epoch draws its permutation
            stopped_at = train_epoch(learner, data, settings["batch_size"], generators["order"], start_step, stop)
            if stopped_at is not None:
                if options.checkpoint and isinstance(data, MemoryData):
                    seconds = epoch_seconds + time.perf_counter() - started
                    save_checkpoint({"step": stopped_at, "order_state": order_state, "seconds": seconds})
                raise Interrupted(f"received signal {stop.signal_name} in epoch {epoch}")
            metrics = evaluate(learner, data, options.eval_batch_size)
            seconds = epoch_seconds + time.perf_counter() - started
            for index, (lr, values) in enumerate(zip(lrs, metrics, strict=True)):
                if not learner.active[index]:
                    continue
                rows[index].append(
                    dict(epoch=epoch, **values, lr=lr, batch_size=settings["batch_size"], seconds=seconds)
                )
                if not math.isfinite(values["train_loss"]):  # a NaN or infinite loss never recovers under SGD
                    diverged[index] = epoch
                    learner.active[index] = False
            report_epoch(epoch, epochs, lrs, metrics, diverged, seconds, time.perf_counter() - trained, first_epoch)
            start_step, epoch_seconds = 0, 0.0
            if options.checkpoint and ((epoch < epochs and any(learner.active)) or stop.signal_name):
                save_checkpoint()
            if stop.signal_name:
                raise Interrupted(f"received signal {stop.signal_name} after epoch {epoch}")

    results = []
    for run, run_rows, diverged_epoch in zip(runs, rows, diverged, strict=True):
        metadata = provenance(run, device, options.threads)
        metadata["engine"] = engine.metadata()
        metadata["learner"] = learner_name
        metadata["packed_learning_rates"] = json.dumps(lrs)
        metadata["diverged"] = json.dumps(diverged_epoch is not None)
        metadata["diverged_epoch"] = json.dumps(diverged_epoch)
        metadata["resumed"] = json.dumps(state is not None)
        results.append((pd.DataFrame(run_rows, columns=RUN_COLUMNS), metadata))
    return results


def report_epoch(
    epoch: int,
    epochs: int,
    lrs: list[float],
    metrics: list[dict[str, float]],
    diverged: list[int | None],
    seconds: float,
    elapsed: float,
    first_epoch: int,
) -> None:
    """One flushed line per epoch, so that `tail -f` on a job's log follows it, with the time left."""
    remaining = (epochs - epoch) * elapsed / (epoch - first_epoch + 1)
    runs = "; ".join(
        f"lr {lr:g}: diverged"
        if diverged[index] is not None and diverged[index] < epoch
        else f"lr {lr:g}: train loss {values['train_loss']:.4f} acc {values['train_acc']:.4f}, "
        f"test loss {values['test_loss']:.4f} acc {values['test_acc']:.4f}"
        for index, (lr, values) in enumerate(zip(lrs, metrics, strict=True))
    )
    print(f"epoch {epoch}/{epochs} ({seconds:.1f} s, about {remaining:.0f} s left): {runs}", flush=True)


def train_pack_to_files(
    runs: list[dict[str, Any]], outputs: list[str], options: RunOptions = RunOptions()
) -> list[pd.DataFrame]:
    """Train a pack and write each run's Parquet atomically (`outputs` in the order of `runs`); then drop
    the checkpoint unless asked to keep it."""
    if len(outputs) != len(runs):
        raise ConfigError(f"{len(runs)} runs but {len(outputs)} output files; give one output per run")
    try:
        results = train_pack(runs, options)
    except torch.cuda.OutOfMemoryError as error:
        settings = runs[0]
        advice = "run it on a GPU with more memory"
        if len(runs) > 1:
            advice = "use a smaller training.pack.size (or learner: serial, which holds one batch's activations)"
        raise OutOfMemory(
            f"GPU out of memory training {len(runs)} {settings['model']} run(s) on {settings['dataset']} at batch "
            f"size {settings['batch_size']}: {advice}, or lower training.eval_batch_size if it failed while "
            f"evaluating ({str(error).splitlines()[0]})"
        ) from error
    for (frame, metadata), output in zip(results, outputs, strict=True):
        write_table(frame, output, metadata)
    if options.checkpoint and not options.keep_checkpoint:
        Path(options.checkpoint).unlink(missing_ok=True)
    return [frame for frame, _ in results]
