"""Train one grid point: plain SGD at a constant learning rate, evaluated on the full sets every epoch.

The data sit on the training device as tensors; each epoch draws a seeded permutation and walks it in
batches of exactly `batch_size` (the last, smaller batch is dropped so that every step of SGD sees
the batch size under study). The seed fixes the initial weights and the data order, so runs that
differ only in batch size or learning rate start from the same weights.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

import bslr
from bslr import checkpoint
from bslr.data import DATASETS, LoaderData, MemoryData, load_dataset
from bslr.engine import (
    Engine,
    autocast,
    claim_gpu,
    configure_backends,
    prepare_model,
    resolve_device,
    resolve_engine,
    sgd,
    to_layout,
)
from bslr.errors import Interrupted, OutOfMemory
from bslr.models import build_model
from bslr.storage import RUN_COLUMNS, write_table


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module, data: MemoryData | LoaderData, split: str, batch_size: int, engine: Engine
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole split, in large batches."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=next(model.parameters()).device)
    correct = torch.zeros((), dtype=torch.int64, device=loss_sum.device)
    for inputs, labels in data.eval_batches(split, batch_size):
        with autocast(engine):
            logits = model(to_layout(inputs, engine)).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        correct += (logits.argmax(dim=1) == labels).sum()
    return loss_sum.item() / data.size(split), correct.item() / data.size(split)


def train_epoch(
    model: torch.nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    data: MemoryData | LoaderData,
    batch_size: int,
    order_generator: torch.Generator,
    engine: Engine,
    start_step: int = 0,
    stop: StopRequest | None = None,
) -> int | None:
    """One epoch of SGD from `start_step`. Returns None when done, or the steps done if a stop was asked.

    `forward` is the model itself, or its compiled form.
    """
    model.train()
    for step, (inputs, labels) in enumerate(data.train_batches(batch_size, order_generator, start_step), start_step):
        with autocast(engine):
            loss = F.cross_entropy(forward(to_layout(inputs, engine)), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if stop is not None and stop.signal_name:
            return step + 1
    return None


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


def train_run(settings: dict[str, Any], options: RunOptions = RunOptions()) -> tuple[pd.DataFrame, dict[str, str]]:
    """Train one run to its last epoch (or until its loss diverges) and return its epochs and metadata.

    With a checkpoint path, the run resumes from the last finished epoch found there and saves after
    every epoch, so a killed job loses at most one epoch and ends with the same metrics.
    """
    with training_device(settings, options) as device:
        return _train_run(settings, options, device)


def _train_run(
    settings: dict[str, Any], options: RunOptions, device: torch.device
) -> tuple[pd.DataFrame, dict[str, str]]:
    data = load_training_data(settings, device, options)
    engine = resolve_engine(settings, device, len(DATASETS[settings["dataset"]].input_shape))
    configure_backends(engine)
    model, forward = prepare_model(initial_model(settings, device), engine)
    optimizer = sgd(model.parameters(), settings, engine)
    generators = data_generators(settings, data)

    rows: list[dict[str, Any]] = []
    diverged_epoch = None
    start_step, epoch_seconds = 0, 0.0
    fingerprint = checkpoint.settings_hash(settings)
    state = checkpoint.load(options.checkpoint, fingerprint) if options.checkpoint else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rows = state["rows"]
        start_step, epoch_seconds = resume_point(state, generators)
        print(f"resuming from {options.checkpoint} after epoch {len(rows)}, step {start_step}", file=sys.stderr)

    def save_checkpoint(partial: dict[str, Any] | None = None) -> None:
        checkpoint.save(
            options.checkpoint,
            {
                "settings_hash": fingerprint,
                "rows": rows,
                "partial": partial,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": checkpoint.capture_rng(generators),
            },
        )

    with stop_requests() as stop:
        for epoch in range(len(rows) + 1, settings["epochs"] + 1):
            started = time.perf_counter()
            order_state = generators["order"].get_state()  # before the epoch draws its permutation
            stopped_at = train_epoch(
                model, forward, optimizer, data, settings["batch_size"], generators["order"], engine, start_step, stop
            )
            if stopped_at is not None:
                if options.checkpoint and isinstance(data, MemoryData):
                    seconds = epoch_seconds + time.perf_counter() - started
                    save_checkpoint({"step": stopped_at, "order_state": order_state, "seconds": seconds})
                raise Interrupted(f"received signal {stop.signal_name} in epoch {epoch}")
            train_loss, train_acc = evaluate(model, data, "train", options.eval_batch_size, engine)
            test_loss, test_acc = evaluate(model, data, "test", options.eval_batch_size, engine)
            rows.append(
                dict(
                    epoch=epoch,
                    train_loss=train_loss,
                    train_acc=train_acc,
                    test_loss=test_loss,
                    test_acc=test_acc,
                    lr=settings["lr"],
                    batch_size=settings["batch_size"],
                    seconds=epoch_seconds + time.perf_counter() - started,
                )
            )
            start_step, epoch_seconds = 0, 0.0
            if not math.isfinite(train_loss):
                diverged_epoch = epoch  # a NaN or infinite loss never recovers under plain SGD
                break
            if options.checkpoint and (epoch < settings["epochs"] or stop.signal_name):
                save_checkpoint()
            if stop.signal_name:
                raise Interrupted(f"received signal {stop.signal_name} after epoch {epoch}")

    metadata = provenance(settings, device, options.threads)
    metadata["engine"] = engine.metadata()
    metadata["diverged"] = json.dumps(diverged_epoch is not None)
    metadata["diverged_epoch"] = json.dumps(diverged_epoch)
    metadata["resumed"] = json.dumps(state is not None)
    return pd.DataFrame(rows, columns=RUN_COLUMNS), metadata


def train_to_file(settings: dict[str, Any], output: str, options: RunOptions = RunOptions()) -> pd.DataFrame:
    """Train and write the per-run Parquet atomically; then drop the checkpoint unless asked to keep it."""
    try:
        frame, metadata = train_run(settings, options)
    except torch.cuda.OutOfMemoryError as error:
        raise OutOfMemory(
            f"GPU out of memory training {settings['model']} on {settings['dataset']} at batch size "
            f"{settings['batch_size']}: run it on a GPU with more memory, or lower training.eval_batch_size "
            f"if it failed while evaluating ({str(error).splitlines()[0]})"
        ) from error
    write_table(frame, output, metadata)
    if options.checkpoint and not options.keep_checkpoint:
        Path(options.checkpoint).unlink(missing_ok=True)
    return frame
