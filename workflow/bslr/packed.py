"""Train every learning rate of one (model, data set, batch size, seed) at once, vectorised.

The runs of such a group start from the same seeded weights and see the same batches in the same
order; they differ only in the step size. So their K models are stacked (`stack_module_state`), and one
`vmap`ped `functional_call` runs all K forward and backward passes as batched kernels over each shared
input batch, BatchNorm running statistics stacked with the weights. The update is plain SGD with one
learning rate per model, momentum and weight decay as configured, in torch.optim.SGD's arithmetic.
Each model's epochs go to its own per-run Parquet, as if it had been trained alone; on CPU the metrics
equal those of separate runs up to float rounding (tests/test_packed.py).
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from bslr import checkpoint
from bslr.data import DATASETS, LoaderData, MemoryData
from bslr.engine import Engine, autocast, configure_backends, resolve_engine, to_layout
from bslr.errors import ConfigError, Interrupted, OutOfMemory
from bslr.storage import RUN_COLUMNS, write_table
from bslr.train import (
    RunOptions,
    data_generators,
    initial_model,
    load_training_data,
    provenance,
    resume_point,
    stop_requests,
    training_device,
)


def check_group(group: list[dict[str, Any]]) -> None:
    """A pack is runs that differ in their learning rate and nothing else."""
    first = {key: value for key, value in group[0].items() if key != "lr"}
    for settings in group[1:]:
        rest = {key: value for key, value in settings.items() if key != "lr"}
        if rest != first:
            differing = sorted(key for key in first.keys() | rest.keys() if first.get(key) != rest.get(key))
            raise ConfigError(f"packed runs must differ only in lr, but these settings differ too: {differing}")
    lrs = [settings["lr"] for settings in group]
    if len(set(lrs)) != len(lrs):
        raise ConfigError(f"packed runs need distinct learning rates, got {lrs}")


class StackedModels:
    """K copies of one network as stacked tensors, trained and evaluated by one vmapped call."""

    def __init__(self, model: torch.nn.Module, lrs: list[float], settings: dict[str, Any], engine: Engine) -> None:
        self.engine = engine
        if engine.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.params, self.buffers = stack_module_state([model] * len(lrs))
        self.skeleton = copy.deepcopy(model).to("meta")  # structure only; weights come from the stacks
        weight = next(iter(self.params.values()))
        self.lr = torch.tensor(lrs, dtype=weight.dtype, device=weight.device)
        device = weight.device
        self.active = torch.ones(len(lrs), dtype=torch.bool, device=device)
        self.momentum, self.weight_decay = settings["momentum"], settings["weight_decay"]
        self.velocity: dict[str, torch.Tensor] = {}

        def logits(params, buffers, inputs):
            return functional_call(self.skeleton, (params, buffers), (inputs,))

        def loss(params, buffers, inputs, labels):
            return F.cross_entropy(logits(params, buffers, inputs), labels)

        self.losses = vmap(loss, in_dims=(0, 0, None, None))
        self.logits = vmap(logits, in_dims=(0, 0, None))
        if engine.compile != "false":
            mode = None if engine.compile == "default" else engine.compile
            self.losses = torch.compile(self.losses, mode=mode, dynamic=False)

    def per_model(self, tensor: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """`value` (one entry per model) shaped to broadcast against a stacked `tensor`."""
        return value.view(-1, *([1] * (tensor.ndim - 1)))

    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        """One SGD step of every model on the same batch: the sum of the K losses has, for each model's
        weights, that model's own gradient."""
        self.skeleton.train()
        names = list(self.params)
        with autocast(self.engine):
            losses = self.losses(self.params, self.buffers, to_layout(inputs, self.engine), labels)
        gradients = torch.autograd.grad(losses.sum(), [self.params[name] for name in names])
        lr = torch.where(self.active, self.lr, 0.0)  # a diverged model is left as it is
        with torch.no_grad():
            for name, gradient in zip(names, gradients, strict=True):
                weight = self.params[name]
                if self.weight_decay:
                    gradient = gradient.add(weight, alpha=self.weight_decay)
                if self.momentum:
                    if name not in self.velocity:
                        self.velocity[name] = gradient.clone()
                    else:
                        self.velocity[name].mul_(self.momentum).add_(gradient)
                    gradient = self.velocity[name]
                weight.sub_(gradient * self.per_model(gradient, lr))

    @torch.inference_mode()
    def evaluate(self, data: MemoryData | LoaderData, split: str, batch_size: int) -> tuple[list[float], list[float]]:
        """Each model's mean cross-entropy and accuracy over a whole split."""
        self.skeleton.eval()
        count = len(self.lr)
        loss_sum = torch.zeros(count, dtype=torch.float64, device=self.lr.device)
        correct = torch.zeros(count, dtype=torch.int64, device=self.lr.device)
        for inputs, labels in data.eval_batches(split, batch_size):
            with autocast(self.engine):
                logits = self.logits(self.params, self.buffers, to_layout(inputs, self.engine)).float()
            losses = F.cross_entropy(logits.flatten(0, 1), labels.repeat(count), reduction="none")
            loss_sum += losses.view(count, -1).sum(dim=1).double()
            correct += (logits.argmax(dim=2) == labels).sum(dim=1)
        size = data.size(split)
        return (loss_sum / size).tolist(), (correct.double() / size).tolist()

    def state(self) -> dict[str, Any]:
        return {
            "params": {name: tensor.detach() for name, tensor in self.params.items()},
            "buffers": self.buffers,
            "velocity": self.velocity,
            "active": self.active,
        }

    def load(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for name, tensor in state["params"].items():
                self.params[name].copy_(tensor)
            for name, tensor in state["buffers"].items():
                self.buffers[name].copy_(tensor)
        device = self.lr.device
        self.velocity = {name: tensor.to(device) for name, tensor in state["velocity"].items()}
        self.active = state["active"].to(device)


def train_packed(
    group: list[dict[str, Any]], options: RunOptions | None = None
) -> list[tuple[pd.DataFrame, dict[str, str]]]:
    """Train the runs of `group` (settings that differ only in lr) together; one (epochs, metadata) each.

    Checkpoints, signals and divergence behave as in `bslr.train.train_run`: a diverged model stops
    recording (its file ends at the epoch it diverged) and the others go on.
    """
    check_group(group)
    options = options or RunOptions()
    with training_device(group[0], options) as device:
        return _train_packed(group, options, device)


def _train_packed(
    group: list[dict[str, Any]], options: RunOptions, device: torch.device
) -> list[tuple[pd.DataFrame, dict[str, str]]]:
    settings = group[0]
    lrs = [run["lr"] for run in group]
    data = load_training_data(settings, device, options)
    engine = resolve_engine(settings, device, len(DATASETS[settings["dataset"]].input_shape))
    configure_backends(engine)
    models = StackedModels(initial_model(settings, device), lrs, settings, engine)
    generators = data_generators(settings, data)

    rows: list[list[dict[str, Any]]] = [[] for _ in lrs]
    diverged: list[int | None] = [None] * len(lrs)
    start_step, epoch_seconds = 0, 0.0
    fingerprint = checkpoint.settings_hash({"packed": group})
    state = checkpoint.load(options.checkpoint, fingerprint) if options.checkpoint else None
    if state is not None:
        models.load(state["models"])
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
                "models": models.state(),
                "rng": checkpoint.capture_rng(generators),
            },
        )

    first_epoch = max(len(run_rows) for run_rows in rows) + 1
    with stop_requests() as stop:
        for epoch in range(first_epoch, settings["epochs"] + 1):
            if not models.active.any():
                break
            started = time.perf_counter()
            order_state = generators["order"].get_state()
            batches = data.train_batches(settings["batch_size"], generators["order"], start_step)
            for step, (inputs, labels) in enumerate(batches, start_step):
                models.step(inputs, labels)
                if stop.signal_name:
                    if options.checkpoint and isinstance(data, MemoryData):
                        seconds = epoch_seconds + time.perf_counter() - started
                        save_checkpoint({"step": step + 1, "order_state": order_state, "seconds": seconds})
                    raise Interrupted(f"received signal {stop.signal_name} in epoch {epoch}")
            train_loss, train_acc = models.evaluate(data, "train", options.eval_batch_size)
            test_loss, test_acc = models.evaluate(data, "test", options.eval_batch_size)
            seconds = epoch_seconds + time.perf_counter() - started
            for index, lr in enumerate(lrs):
                if diverged[index] is not None:
                    continue
                rows[index].append(
                    dict(
                        epoch=epoch,
                        train_loss=train_loss[index],
                        train_acc=train_acc[index],
                        test_loss=test_loss[index],
                        test_acc=test_acc[index],
                        lr=lr,
                        batch_size=settings["batch_size"],
                        seconds=seconds,
                    )
                )
                if not math.isfinite(train_loss[index]):
                    diverged[index] = epoch
                    models.active[index] = False
            start_step, epoch_seconds = 0, 0.0
            if options.checkpoint and (epoch < settings["epochs"] or stop.signal_name):
                save_checkpoint()
            if stop.signal_name:
                raise Interrupted(f"received signal {stop.signal_name} after epoch {epoch}")

    results = []
    for run, run_rows, diverged_epoch in zip(group, rows, diverged, strict=True):
        metadata = provenance(run, device, options.threads)
        metadata["engine"] = engine.metadata()
        metadata["packed_learning_rates"] = json.dumps(lrs)
        metadata["diverged"] = json.dumps(diverged_epoch is not None)
        metadata["diverged_epoch"] = json.dumps(diverged_epoch)
        metadata["resumed"] = json.dumps(state is not None)
        results.append((pd.DataFrame(run_rows, columns=RUN_COLUMNS), metadata))
    return results


def train_packed_to_files(
    group: list[dict[str, Any]], outputs: list[str], options: RunOptions | None = None
) -> list[pd.DataFrame]:
    """Train a pack and write one per-run Parquet per learning rate (`outputs` in the order of `group`)."""
    if len(outputs) != len(group):
        raise ConfigError(f"{len(group)} packed runs but {len(outputs)} output files; give one output per run")
    options = options or RunOptions()
    try:
        results = train_packed(group, options)
    except torch.cuda.OutOfMemoryError as error:
        settings = group[0]
        raise OutOfMemory(
            f"GPU out of memory training {len(group)} packed {settings['model']} runs on {settings['dataset']} at "
            f"batch size {settings['batch_size']}: set training.pack_learning_rates: false for this experiment, "
            f"or lower training.eval_batch_size if it failed while evaluating ({str(error).splitlines()[0]})"
        ) from error
    for (frame, metadata), output in zip(results, outputs, strict=True):
        write_table(frame, output, metadata)
    if options.checkpoint and not options.keep_checkpoint:
        Path(options.checkpoint).unlink(missing_ok=True)
    return [frame for frame, _ in results]
