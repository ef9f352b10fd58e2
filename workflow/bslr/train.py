"""The training core: one loop trains a pack of runs (K >= 1 runs that differ only in learning rate).

Plain SGD at a constant learning rate for the run's budget (`bslr.budget`: epochs, steps, or until a
target), evaluated on the full training and test sets as `training.evaluation` says (every epoch by
default), with the measures of `bslr.measures` where asked. The data sit on the training device as
tensors; each epoch draws a seeded permutation and walks it in batches of exactly `batch_size` (the last,
smaller batch is dropped so that every step of SGD sees the batch size under study). The seed fixes the
initial weights and the data order, so runs that differ only in batch size or learning rate start from the
same weights. How the K models compute is the learner's business (`bslr.learners`); everything else
(budgets, evaluation, measures, resume, signals, divergence, provenance, the per-run files) is here, once.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

import bslr
from bslr import checkpoint
from bslr.budget import Budget
from bslr.catalog import dataset_of, model_of
from bslr.config import resolve_learner, with_protocol_defaults
from bslr.data import LoaderData, MemoryData, load_dataset
from bslr.engine import Engine, claim_gpu, configure_backends, resolve_device, resolve_engine
from bslr.errors import ConfigError, Interrupted, ModelError, OutOfMemory
from bslr.learners import Learner, build_learner, stacking_error
from bslr.measures import Measurer
from bslr.models import build_model, check_output
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
    data_file: str | None = None  # the data file the job's rule gives: generated MNIST-1D, or a config's npz


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
        dataset_of(settings),
        settings["data_root"],
        settings["download"],
        settings["augment"],
        device,
        seed=settings["seed"],
        workers=options.workers,
        data_file=options.data_file,
    )


def initial_model(settings: dict[str, Any], device: torch.device) -> torch.nn.Module:
    """The seeded initial weights: the same for every batch size and learning rate of a seed. A config's
    own model is checked to give (batch, classes) logits on the data set's inputs before any step."""
    model_spec, data_spec = model_of(settings), dataset_of(settings)
    torch.manual_seed(settings["seed"])
    model = build_model(model_spec, data_spec.input_shape, data_spec.num_classes, settings["mlp_hidden"]).to(device)
    if not model_spec.builtin:
        check_output(model, model_spec, data_spec.input_shape, data_spec.num_classes)
    return model


def choose_learner(settings: dict[str, Any], runs: int, model: torch.nn.Module, engine: Engine) -> str:
    """The learner of a pack: `resolve_learner`'s, except that a config's own model that `vmap` cannot stack
    trains serially under `auto` (the per-run files record it), and is refused under `stacked` before any step."""
    name = resolve_learner(settings["learner"], runs)
    model_spec = model_of(settings)
    if name != "stacked" or model_spec.builtin:
        return name
    data_spec = dataset_of(settings)
    error = stacking_error(model, engine, data_spec.input_shape, data_spec.num_classes)
    if error is None:
        return name
    if settings["learner"] == "auto":
        return "serial"
    raise ModelError(
        f"model {model_spec.name} ({model_spec.factory}) cannot be stacked by torch.func.vmap ({error}); set "
        "training.pack.learner: serial (or auto, which chooses serial for it): its runs then train one after "
        "another in the job, each exactly as alone"
    )


def data_generators(settings: dict[str, Any], data: MemoryData | LoaderData) -> dict[str, torch.Generator | None]:
    """What a run draws its data from: the seeded batch order, and the augmentation (None without)."""
    return {
        "order": torch.Generator().manual_seed(settings["seed"]),
        "augment": getattr(data, "augment_generator", None),
    }


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
    after_step: Callable[[int], bool] | None = None,
) -> int:
    """One epoch of SGD from `start_step`. `after_step` is called with the epoch's steps done after each
    step, and ends the epoch there by returning True. Returns the epoch's steps done."""
    step = start_step
    for inputs, labels in data.train_batches(batch_size, order_generator, start_step):
        learner.step(inputs, labels)
        step += 1
        if after_step is not None and after_step(step):
            break
    return step


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
    """Train a pack to the end of its budget and return each run's evaluations and metadata, in the order of
    `runs`.

    A run whose training loss becomes NaN or infinite stops there (its file ends at that evaluation), as does
    one that reaches its target (`bslr.budget`); the others go on. With a checkpoint path, the pack resumes
    from the last finished epoch (or the step a signal stopped it at) found there and saves after every
    epoch, so a killed job loses at most one epoch and ends with the same metrics.
    """
    check_pack(runs)
    with training_device(runs[0], options) as device:
        return _train_pack(runs, options, device)


@dataclass
class Progress:
    """Where a pack stands, all of it saved in its checkpoint."""

    rows: list[list[dict[str, Any]]]  # each run's evaluations
    diverged: list[int | None]  # the epoch each run diverged in
    diverged_step: list[int | None]
    reached: list[int | None]  # the step at which each run reached its target
    step: int = 0  # SGD steps done
    seconds: float = 0.0  # wall time since the last evaluation row
    evaluation_seconds: float = 0.0  # the pack's time in evaluations
    measure_seconds: list[float] = dataclasses.field(default_factory=list)  # each run's time in measures

    @classmethod
    def start(cls, runs: int) -> Progress:
        return cls([[] for _ in range(runs)], [None] * runs, [None] * runs, [None] * runs, measure_seconds=[0.0] * runs)


def _train_pack(
    runs: list[dict[str, Any]], options: RunOptions, device: torch.device
) -> list[tuple[pd.DataFrame, dict[str, str]]]:
    settings, lrs = with_protocol_defaults(runs[0]), [run["lr"] for run in runs]
    data = load_training_data(settings, device, options)
    engine = resolve_engine(settings, device, len(dataset_of(settings).input_shape))
    configure_backends(engine)
    model = initial_model(settings, device)
    learner_name = choose_learner(settings, len(runs), model, engine)
    initial = torch.cat([weight.detach().reshape(-1) for weight in model.parameters()]).clone()
    learner = build_learner(learner_name, model, runs, engine)
    generators = data_generators(settings, data)
    budget = Budget.of(settings, data.size("train"))
    measurer = None
    if settings["measures"]:
        known_end = budget.steps if budget.target is None and not budget.measure_epochs else None
        measurer = Measurer(settings, data, initial, budget.steps_per_epoch, options.eval_batch_size, known_end)
    columns = RUN_COLUMNS + (measurer.columns if measurer else [])

    progress, resume_order = Progress.start(len(runs)), None
    fingerprint = checkpoint.settings_hash({"runs": runs, "learner": learner_name})
    state = checkpoint.load(options.checkpoint, fingerprint) if options.checkpoint else None
    if state is not None:
        learner.load(state["learner"])
        progress = Progress(**state["progress"])
        checkpoint.restore_rng(state["rng"], generators)
        resume_order = state["order_state"]  # the stopped epoch's order, to replay; None at an epoch's end
        if measurer:
            measurer.load(state["measurer"])
        print(
            f"resuming from {options.checkpoint} at step {progress.step} of {budget.steps} "
            f"(epoch {progress.step // budget.steps_per_epoch + 1})",
            file=sys.stderr,
        )

    def save_checkpoint(order_state: torch.Tensor | None) -> None:
        checkpoint.save(
            options.checkpoint,
            {
                "settings_hash": fingerprint,
                "progress": dataclasses.asdict(progress),
                "order_state": order_state,
                "learner": learner.state(),
                "measurer": measurer.state() if measurer else {},
                "rng": checkpoint.capture_rng(generators),
            },
        )

    first_step, trained = progress.step, time.perf_counter()
    clock = time.perf_counter()  # when progress.seconds was last brought up to date

    def tick() -> float:
        nonlocal clock
        now = time.perf_counter()
        progress.seconds += now - clock
        clock = now
        return progress.seconds

    def record() -> None:
        """Evaluate every active run at this step: divergence, the target, the measures, a row each."""
        step, epoch = progress.step, budget.epoch_of(progress.step)
        was_active = list(learner.active)
        started = time.perf_counter()
        metrics = evaluate(learner, data, options.eval_batch_size)
        progress.evaluation_seconds += time.perf_counter() - started
        measured: dict[int, dict[str, float]] = {}
        for index, values in enumerate(metrics):
            if not was_active[index]:
                continue
            if not math.isfinite(values["train_loss"]):  # a NaN or infinite loss never recovers under SGD
                progress.diverged[index], progress.diverged_step[index] = epoch, step
                learner.active[index] = False
                continue
            if budget.reached(values):
                progress.reached[index] = step
                learner.active[index] = False
            if measurer and (not learner.active[index] or step == budget.steps or budget.measures_at(step)):
                started = time.perf_counter()
                measured[index] = measurer.measure(learner, index)
                progress.measure_seconds[index] += time.perf_counter() - started
        seconds = tick()
        for index, values in enumerate(metrics):
            if was_active[index]:
                empty = dict.fromkeys(measurer.columns, math.nan) if measurer else {}
                progress.rows[index].append(
                    dict(epoch=epoch, **values, lr=lrs[index], batch_size=settings["batch_size"], seconds=seconds)
                    | dict(step=step, samples_seen=step * settings["batch_size"])
                    | empty
                    | measured.get(index, {})
                )
        progress.seconds = 0.0
        report(budget, step, lrs, metrics, was_active, progress, seconds, time.perf_counter() - trained, first_step)

    with stop_requests() as stop:

        def after_step(epoch_steps: int) -> bool:
            progress.step += 1
            if measurer:
                measurer.observe(learner, progress.step)
            if budget.evaluates_at(progress.step):
                record()
            return progress.step == budget.steps or not any(learner.active) or stop.signal_name is not None

        while progress.step < budget.steps and any(learner.active):
            epoch, start = budget.epoch_of(progress.step + 1), progress.step % budget.steps_per_epoch
            if resume_order is not None:
                generators["order"].set_state(resume_order)
                resume_order = None
            order_state = generators["order"].get_state()  # before the epoch draws its permutation
            train_epoch(learner, data, settings["batch_size"], generators["order"], start, after_step)
            finished = progress.step == budget.steps or not any(learner.active)
            mid_epoch = not budget.ends_epoch(progress.step)
            if options.checkpoint and not finished and (not mid_epoch or isinstance(data, MemoryData)):
                tick()
                save_checkpoint(order_state if mid_epoch else None)
            if stop.signal_name and not finished:
                where = "in" if mid_epoch else "after"
                raise Interrupted(f"received signal {stop.signal_name} {where} epoch {epoch}")

    results = []
    for index, run in enumerate(runs):
        metadata = provenance(run, device, options.threads)
        metadata["engine"] = engine.metadata()
        metadata["learner"] = learner_name
        metadata["packed_learning_rates"] = json.dumps(lrs)
        metadata["diverged"] = json.dumps(progress.diverged[index] is not None)
        metadata["diverged_epoch"] = json.dumps(progress.diverged[index])
        metadata["diverged_step"] = json.dumps(progress.diverged_step[index])
        metadata["resumed"] = json.dumps(state is not None)
        metadata["budget"] = budget.kind
        metadata["budget_steps"] = json.dumps(budget.steps)
        metadata["steps_per_epoch"] = json.dumps(budget.steps_per_epoch)
        reached, diverged = progress.reached[index], progress.diverged[index] is not None
        # a diverged run is recorded as diverged, not as censored: it did not run out of budget
        metadata["reached_target"] = json.dumps(None if budget.target is None or diverged else reached is not None)
        metadata["target_step"] = json.dumps(reached)
        metadata["evaluation_seconds"] = json.dumps(round(progress.evaluation_seconds, 3))
        metadata["measure_seconds"] = json.dumps(round(progress.measure_seconds[index], 3))
        results.append((pd.DataFrame(progress.rows[index], columns=columns), metadata))
    return results


def report(
    budget: Budget,
    step: int,
    lrs: list[float],
    metrics: list[dict[str, float]],
    evaluated: list[bool],
    progress: Progress,
    seconds: float,
    elapsed: float,
    first_step: int,
) -> None:
    """One flushed line per evaluation, so that `tail -f` on a job's log follows it, with the time left."""
    remaining = (budget.steps - step) * elapsed / (step - first_step)

    def state(index: int, values: dict[str, float]) -> str:
        if progress.diverged[index] is not None and progress.diverged_step[index] < step:
            return "diverged"
        if not evaluated[index]:
            return f"reached the target at step {progress.reached[index]}"
        text = (
            f"train loss {values['train_loss']:.4f} acc {values['train_acc']:.4f}, "
            f"test loss {values['test_loss']:.4f} acc {values['test_acc']:.4f}"
        )
        return text + (" (target reached)" if progress.reached[index] == step else "")

    runs = "; ".join(
        f"lr {lr:g}: {state(index, values)}" for index, (lr, values) in enumerate(zip(lrs, metrics, strict=True))
    )
    print(
        f"epoch {budget.epoch_of(step)}/{budget.epochs} (step {step}/{budget.steps}, {seconds:.1f} s, "
        f"about {remaining:.0f} s left): {runs}",
        flush=True,
    )


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
