"""Train one grid point: plain SGD at a constant learning rate, evaluated on the full sets every epoch.

The data sit on the training device as tensors; each epoch draws a seeded permutation and walks it in
batches of exactly `batch_size` (the last, smaller batch is dropped so that every step of SGD sees
the batch size under study). The seed fixes the initial weights and the data order, so runs that
differ only in batch size or learning rate start from the same weights.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import time
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

import bslr
from bslr.data import DATASETS, LoaderData, MemoryData, load_dataset
from bslr.models import build_model
from bslr.storage import RUN_COLUMNS, write_table


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    return torch.device(name)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, data: MemoryData | LoaderData, split: str, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole split, in large batches."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=next(model.parameters()).device)
    correct = torch.zeros((), dtype=torch.int64, device=loss_sum.device)
    for inputs, labels in data.eval_batches(split, batch_size):
        logits = model(inputs).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        correct += (logits.argmax(dim=1) == labels).sum()
    return loss_sum.item() / data.size(split), correct.item() / data.size(split)


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: MemoryData | LoaderData,
    batch_size: int,
    order_generator: torch.Generator,
) -> None:
    model.train()
    for inputs, labels in data.train_batches(batch_size, order_generator):
        loss = F.cross_entropy(model(inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


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


def train_run(
    settings: dict[str, Any], threads: int = 1, eval_batch_size: int = 1000, workers: int = 8
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Train one run to its last epoch (or until its loss diverges) and return its epochs and metadata."""
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = resolve_device(settings["device"])
    data = load_dataset(
        settings["dataset"],
        settings["data_root"],
        settings["download"],
        settings["augment"],
        device,
        seed=settings["seed"],
        workers=workers,
    )
    spec = DATASETS[settings["dataset"]]

    torch.manual_seed(settings["seed"])
    model = build_model(settings["model"], spec.input_shape, spec.num_classes, settings["mlp_hidden"]).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=settings["lr"],
        momentum=settings["momentum"],
        weight_decay=settings["weight_decay"],
    )
    generator = torch.Generator().manual_seed(settings["seed"])

    rows = []
    diverged_epoch = None
    for epoch in range(1, settings["epochs"] + 1):
        started = time.perf_counter()
        train_epoch(model, optimizer, data, settings["batch_size"], generator)
        train_loss, train_acc = evaluate(model, data, "train", eval_batch_size)
        test_loss, test_acc = evaluate(model, data, "test", eval_batch_size)
        rows.append(
            dict(
                epoch=epoch,
                train_loss=train_loss,
                train_acc=train_acc,
                test_loss=test_loss,
                test_acc=test_acc,
                lr=settings["lr"],
                batch_size=settings["batch_size"],
                seconds=time.perf_counter() - started,
            )
        )
        if not math.isfinite(train_loss):
            diverged_epoch = epoch  # a NaN or infinite loss never recovers under plain SGD
            break

    metadata = provenance(settings, device, threads)
    metadata["diverged"] = json.dumps(diverged_epoch is not None)
    metadata["diverged_epoch"] = json.dumps(diverged_epoch)
    return pd.DataFrame(rows, columns=RUN_COLUMNS), metadata


def train_to_file(
    settings: dict[str, Any], output: str, threads: int = 1, eval_batch_size: int = 1000, workers: int = 8
) -> pd.DataFrame:
    frame, metadata = train_run(settings, threads=threads, eval_batch_size=eval_batch_size, workers=workers)
    write_table(frame, output, metadata)
    return frame
