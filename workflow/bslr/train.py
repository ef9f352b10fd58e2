"""The training core: one loop trains a pack of runs (K >= 1 runs that differ only in learning rate).

The run's optimizer (plain SGD by default, the paper's) at the learning rate its schedule sets at each step
(`bslr.schedule`; constant by default) for the run's budget (`bslr.budget`: epochs, steps, or until a
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

import bslr
from bslr import checkpoint
from bslr.budget import Budget
from bslr.config import RunSpec, resolve_learner
from bslr.data import LoaderData, MemoryData, load_dataset
from bslr.engine import Engine, claim_gpu, configure_backends, resolve_device, resolve_engine
from bslr.errors import ConfigError, Interrupted, ModelError, OutOfMemory
from bslr.learners import Learner, build_learner, stacking_error
from bslr.measures import Measurer
from bslr.models import build_model, check_output
from bslr.progress import ProgressFile, run_entry
from bslr.schedule import Schedule
from bslr.storage import RUN_COLUMNS, write_table

if TYPE_CHECKING:
    from bslr.tensorboard import PackBoard


def provenance(run: RunSpec, device: torch.device, threads: int) -> dict[str, str]:
    """Key-value metadata of a per-run Parquet: what ran, with what, where."""
    return {
        "settings": json.dumps(run.settings(), sort_keys=True),
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
    progress: str | None = None  # the job's progress file (JSON lines, `bslr.progress`)
    tensorboard: tuple[str, ...] | None = None  # each run's TensorBoard run directory, in the pack's order


class StopRequest:
    """Set by SIGTERM or SIGUSR1 (a scheduler's time limit or preemption) or SIGINT (Ctrl-C, which Snakemake's
    process group passes to every job); training checks it after each step, so the checkpoint it then
    writes never holds a half-applied update."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.signal_name = signal.Signals(signum).name


@contextlib.contextmanager
def training_device(run: RunSpec, options: RunOptions) -> Iterator[torch.device]:
    """The device a job trains on, set up for it: CPU threads, a claimed GPU (see `claim_gpu`),
    cuDNN autotuning for the fixed batch shapes, or deterministic kernels when asked."""
    torch.set_num_threads(options.threads)
    device = resolve_device(run.device)
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


def load_training_data(run: RunSpec, device: torch.device, options: RunOptions) -> MemoryData | LoaderData:
    return load_dataset(
        run.dataset_entry,
        run.data_root,
        run.download,
        run.augment,
        device,
        seed=run.seed,
        workers=options.workers,
        data_file=options.data_file,
    )


def initial_model(run: RunSpec, device: torch.device) -> torch.nn.Module:
    """The seeded initial weights: the same for every batch size and learning rate of a seed. A config's
    own model is checked to give (batch, classes) logits on the data set's inputs before any step."""
    model_spec, data_spec = run.model_entry, run.dataset_entry
    torch.manual_seed(run.seed)
    model = build_model(model_spec, data_spec.input_shape, data_spec.num_classes, list(run.mlp_hidden)).to(device)
    if not model_spec.builtin:
        check_output(model, model_spec, data_spec.input_shape, data_spec.num_classes)
    return model


def choose_learner(run: RunSpec, runs: int, model: torch.nn.Module, engine: Engine) -> str:
    """The learner of a pack: `resolve_learner`'s, except that a config's own model that `vmap` cannot stack
    trains serially under `auto` (the per-run files record it), and is refused under `stacked` before any step."""
    name = resolve_learner(run.learner, runs)
    model_spec = run.model_entry
    if name != "stacked" or model_spec.builtin:
        return name
    data_spec = run.dataset_entry
    error = stacking_error(model, engine, data_spec.input_shape, data_spec.num_classes)
    if error is None:
        return name
    if run.learner == "auto":
        return "serial"
    raise ModelError(
        f"model {model_spec.name} ({model_spec.factory}) cannot be stacked by torch.func.vmap ({error}); set "
        "training.pack.learner: serial (or auto, which chooses serial for it): its runs then train one after "
        "another in the job, each exactly as alone"
    )


def data_generators(run: RunSpec, data: MemoryData | LoaderData) -> dict[str, torch.Generator | None]:
    """What a run draws its data from: the seeded batch order, and the augmentation (None without)."""
    return {
        "order": torch.Generator().manual_seed(run.seed),
        "augment": getattr(data, "augment_generator", None),
    }


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """While training runs, SIGTERM, SIGUSR1 and SIGINT set a flag instead of ending the process."""
    stop = StopRequest()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def check_pack(runs: Sequence[RunSpec]) -> None:
    """A pack is runs that differ in their learning rate and nothing else."""
    if not runs:
        raise ConfigError("a pack needs at least one run")
    first = dataclasses.replace(runs[0], lr=0.0)
    for run in runs[1:]:
        if dataclasses.replace(run, lr=0.0) != first:
            ours, theirs = runs[0].settings(), run.settings()
            differing = sorted(
                key for key in ours.keys() | theirs.keys() if key != "lr" and ours.get(key) != theirs.get(key)
            )
            raise ConfigError(f"packed runs must differ only in lr, but these settings differ too: {differing}")
    lrs = [run.lr for run in runs]
    if len(set(lrs)) != len(lrs):
        raise ConfigError(f"packed runs need distinct learning rates, got {lrs}")


def train_steps(
    learner: Learner,
    data: MemoryData | LoaderData,
    batch_size: int,
    order_generator: torch.Generator,
    start_step: int = 0,
    schedule: Schedule | None = None,
    steps_done: int = 0,
) -> Iterator[None]:
    """One epoch of SGD from its step `start_step`, yielding after each step (the caller ends the epoch
    early by no longer asking). With a schedule, each step's learning rate is set first: the run has taken
    `steps_done` steps before this epoch's first."""
    for step, (inputs, labels) in enumerate(data.train_batches(batch_size, order_generator, start_step), 1):
        if schedule is not None and not schedule.constant:
            learner.set_lr_factor(schedule.factor(steps_done + step))
        learner.step(inputs, labels)
        yield


def evaluate(learner: Learner, data: MemoryData | LoaderData, batch_size: int) -> list[dict[str, float]]:
    """Each run's loss and accuracy on the whole training and test sets."""
    train, test = (learner.evaluate(data, split, batch_size) for split in ("train", "test"))
    return [
        dict(train_loss=train_loss, train_acc=train_acc, test_loss=test_loss, test_acc=test_acc)
        for (train_loss, train_acc), (test_loss, test_acc) in zip(train, test, strict=True)
    ]


def train_pack(
    runs: Sequence[RunSpec], options: RunOptions = RunOptions(), progress_file: ProgressFile | None = None
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
        return _train_pack(runs, options, device, progress_file or ProgressFile(None, [run.lr for run in runs]))


@contextlib.contextmanager
def job_progress(runs: Sequence[RunSpec], path: str | None) -> Iterator[ProgressFile]:
    """A training job's progress file, ended with how the job ended if not as planned: stopped by a signal, or
    failed with its error (a GPU out of memory as the error that says what to change)."""
    progress_file = ProgressFile(path, [run.lr for run in runs])
    try:
        yield progress_file
    except torch.cuda.OutOfMemoryError as error:
        failure = out_of_memory(runs, error)
        progress_file.close(failure)
        raise failure from error
    except BaseException as error:
        progress_file.close(error, stopped=isinstance(error, (Interrupted, KeyboardInterrupt)))
        raise
    progress_file.close()


def out_of_memory(runs: Sequence[RunSpec], error: torch.cuda.OutOfMemoryError) -> OutOfMemory:
    """The error that says what to change when a pack does not fit its GPU."""
    run = runs[0]
    advice = "run it on a GPU with more memory"
    if len(runs) > 1:
        advice = "use a smaller training.pack.size (or learner: serial, which holds one batch's activations)"
    return OutOfMemory(
        f"GPU out of memory training {len(runs)} {run.model} run(s) on {run.dataset} at batch "
        f"size {run.batch_size}: {advice}, or lower training.eval_batch_size if it failed while "
        f"evaluating ({str(error).splitlines()[0]})"
    )


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


class Stopwatch:
    """The wall time a pack's rows report: time accrues to `progress.seconds` at each `lap`, so that time
    already spent before a checkpoint counts after the resume."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.last = progress, time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        self.progress.seconds += now - self.last
        self.last = now
        return self.progress.seconds


def _train_pack(
    runs: Sequence[RunSpec], options: RunOptions, device: torch.device, progress_file: ProgressFile
) -> list[tuple[pd.DataFrame, dict[str, str]]]:
    # Setup: the data, the engine, the seeded model and the learner that steps the pack's copies of it.
    run, lrs = runs[0], [run.lr for run in runs]
    data = load_training_data(run, device, options)
    engine = resolve_engine(run, device, len(run.dataset_entry.input_shape))
    configure_backends(engine)
    model = initial_model(run, device)
    learner_name = choose_learner(run, len(runs), model, engine)
    initial = torch.cat([weight.detach().reshape(-1) for weight in model.parameters()]).clone()
    learner = build_learner(learner_name, model, [each.update_rule for each in runs], engine)
    generators = data_generators(run, data)
    budget = run.training_budget(data.size("train"))
    schedule = Schedule.of(run.schedule, budget.steps_per_epoch, budget.steps)
    measurer = None
    if run.measures:
        known_end = budget.steps if budget.target is None and not budget.measure_epochs else None
        measurer = Measurer(run, data, initial, budget.steps_per_epoch, options.eval_batch_size, known_end)

    # Resume: from the pack's checkpoint, where one of these very settings is found.
    fingerprint = pack_fingerprint(runs, learner_name)
    state = checkpoint.load(options.checkpoint, fingerprint) if options.checkpoint else None
    progress, resume_order = Progress.start(len(runs)), None
    if state is not None:
        progress, resume_order = resume(state, learner, generators, measurer)
        print(
            f"resuming from {options.checkpoint} at step {progress.step} of {budget.steps} "
            f"(epoch {progress.step // budget.steps_per_epoch + 1})",
            file=sys.stderr,
        )

    # The loop: epochs of SGD steps, evaluated where the budget says, checkpointed after each epoch, told to the
    # job's logs (text, progress file, TensorBoard) as it goes, a resumed pack's earlier evaluations first.
    with stop_requests() as stop, PackLogs(runs, budget, progress, progress_file, options.tensorboard) as logs:
        first_step, trained, stopwatch = progress.step, time.perf_counter(), Stopwatch(progress)
        while progress.step < budget.steps and any(learner.active):
            epoch, start = budget.epoch_of(progress.step + 1), progress.step % budget.steps_per_epoch
            if resume_order is not None:  # replay the stopped epoch's permutation
                generators["order"].set_state(resume_order)
                resume_order = None
            order_state = generators["order"].get_state()  # before the epoch draws its permutation
            for _ in train_steps(learner, data, run.batch_size, generators["order"], start, schedule, progress.step):
                progress.step += 1
                if measurer:
                    measurer.observe(learner, progress.step)
                if budget.evaluates_at(progress.step):
                    metrics, was_active, measured = evaluate_pack(
                        learner, data, budget, measurer, progress, options.eval_batch_size
                    )
                    seconds = stopwatch.lap()
                    rates = lrs if schedule.constant else [lr * schedule.factor(progress.step) for lr in lrs]
                    append_rows(progress, metrics, was_active, measured, rates, run.batch_size, budget, measurer)
                    progress.seconds = 0.0
                    left = (
                        (budget.steps - progress.step) * (time.perf_counter() - trained) / (progress.step - first_step)
                    )
                    logs.evaluated(progress, metrics, was_active, seconds, left)
                if progress.step == budget.steps or not any(learner.active) or stop.signal_name is not None:
                    break
            finished = progress.step == budget.steps or not any(learner.active)
            mid_epoch = not budget.ends_epoch(progress.step)
            if options.checkpoint and not finished and (not mid_epoch or isinstance(data, MemoryData)):
                stopwatch.lap()
                save(
                    options.checkpoint,
                    fingerprint,
                    progress,
                    order_state if mid_epoch else None,
                    learner,
                    measurer,
                    generators,
                )
            if stop.signal_name and not finished:
                where = "in" if mid_epoch else "after"
                raise Interrupted(f"received signal {stop.signal_name} {where} epoch {epoch}")
        logs.ended(progress)

    # The files: each run's rows, and what produced them.
    columns = RUN_COLUMNS + (measurer.columns if measurer else [])
    return [
        (
            pd.DataFrame(progress.rows[index], columns=columns),
            run_metadata(each, index, device, options, engine, learner_name, lrs, budget, progress, state is not None),
        )
        for index, each in enumerate(runs)
    ]


def pack_fingerprint(runs: Sequence[RunSpec], learner: str) -> str:
    """What a checkpoint must have been written for to be resumed: these runs, stepped by this learner."""
    return checkpoint.settings_hash({"runs": [run.settings() for run in runs], "learner": learner})


def resume(
    state: dict[str, Any], learner: Learner, generators: dict[str, torch.Generator | None], measurer: Measurer | None
) -> tuple[Progress, torch.Tensor | None]:
    """Restore a pack from its checkpoint: the learner, every random state, the measures' windows. Returns the
    progress and the stopped epoch's order state (to replay; None where the checkpoint ends an epoch)."""
    learner.load(state["learner"])
    checkpoint.restore_rng(state["rng"], generators)
    if measurer:
        measurer.load(state["measurer"])
    return Progress(**state["progress"]), state["order_state"]


def save(
    path: str,
    fingerprint: str,
    progress: Progress,
    order_state: torch.Tensor | None,
    learner: Learner,
    measurer: Measurer | None,
    generators: dict[str, torch.Generator | None],
) -> None:
    checkpoint.save(
        path,
        {
            "settings_hash": fingerprint,
            "progress": dataclasses.asdict(progress),
            "order_state": order_state,
            "learner": learner.state(),
            "measurer": measurer.state() if measurer else {},
            "rng": checkpoint.capture_rng(generators),
        },
    )


def evaluate_pack(
    learner: Learner,
    data: MemoryData | LoaderData,
    budget: Budget,
    measurer: Measurer | None,
    progress: Progress,
    eval_batch_size: int,
) -> tuple[list[dict[str, float]], list[bool], dict[int, dict[str, float]]]:
    """Evaluate every active run at this step and settle what follows from it: a run whose loss is not
    finite has diverged (it never recovers under SGD), one at its target stops, and the measures are taken
    where due. Returns every run's metrics, which runs were evaluated (active before this step), and the
    measures taken, by run."""
    step, epoch = progress.step, budget.epoch_of(progress.step)
    was_active = list(learner.active)
    started = time.perf_counter()
    metrics = evaluate(learner, data, eval_batch_size)
    progress.evaluation_seconds += time.perf_counter() - started
    measured: dict[int, dict[str, float]] = {}
    for index, values in enumerate(metrics):
        if not was_active[index]:
            continue
        if not math.isfinite(values["train_loss"]):
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
    return metrics, was_active, measured


def append_rows(
    progress: Progress,
    metrics: list[dict[str, float]],
    evaluated: list[bool],
    measured: dict[int, dict[str, float]],
    rates: list[float],
    batch_size: int,
    budget: Budget,
    measurer: Measurer | None,
) -> None:
    """A row for each run evaluated at this step (a measured column is NaN where not measured); `lr` is the
    rate each run's last step used (its schedule's)."""
    step, empty = progress.step, dict.fromkeys(measurer.columns, math.nan) if measurer else {}
    for index, values in enumerate(metrics):
        if evaluated[index]:
            progress.rows[index].append(
                dict(
                    epoch=budget.epoch_of(step),
                    **values,
                    lr=rates[index],
                    batch_size=batch_size,
                    seconds=progress.seconds,
                )
                | dict(step=step, samples_seen=step * batch_size)
                | empty
                | measured.get(index, {})
            )


def run_metadata(
    run: RunSpec,
    index: int,
    device: torch.device,
    options: RunOptions,
    engine: Engine,
    learner_name: str,
    lrs: list[float],
    budget: Budget,
    progress: Progress,
    resumed: bool,
) -> dict[str, str]:
    """A per-run file's metadata: its provenance, and how its run went (divergence, target, time)."""
    reached, diverged = progress.reached[index], progress.diverged[index] is not None
    return provenance(run, device, options.threads) | {
        "engine": engine.metadata(),
        "learner": learner_name,
        "packed_learning_rates": json.dumps(lrs),
        "diverged": json.dumps(diverged),
        "diverged_epoch": json.dumps(progress.diverged[index]),
        "diverged_step": json.dumps(progress.diverged_step[index]),
        "resumed": json.dumps(resumed),
        "budget": budget.kind,
        "budget_steps": json.dumps(budget.steps),
        "steps_per_epoch": json.dumps(budget.steps_per_epoch),
        # a diverged run is recorded as diverged, not as censored: it did not run out of budget
        "reached_target": json.dumps(None if budget.target is None or diverged else reached is not None),
        "target_step": json.dumps(reached),
        "evaluation_seconds": json.dumps(round(progress.evaluation_seconds, 3)),
        "measure_seconds": json.dumps(round(progress.measure_seconds[index], 3)),
    }


def metrics_text(values: Mapping[str, float]) -> str:
    """One run's evaluation as a log line shows it."""
    return (
        f"train loss {values['train_loss']:.4f} acc {values['train_acc']:.4f}, "
        f"test loss {values['test_loss']:.4f} acc {values['test_acc']:.4f}"
    )


class PackLogs:
    """Where a pack's course is told as it trains: a flushed line per evaluation on stdout (the job's log, so
    that `tail -f` follows it), a JSON line in its progress file (`bslr.progress`, what `bslr status` reads),
    and its runs' TensorBoard logs where asked (`bslr.tensorboard`). Opened on a resumed pack, it tells the
    evaluations its checkpoint holds first: Snakemake deletes a job's logs before running it again, and every
    log should still tell the whole run, each evaluation once."""

    def __init__(
        self,
        runs: Sequence[RunSpec],
        budget: Budget,
        progress: Progress,
        progress_file: ProgressFile,
        tensorboard: Sequence[str] | None,
    ) -> None:
        self.lrs, self.budget, self.progress_file = [run.lr for run in runs], budget, progress_file
        self.board: PackBoard | None = None
        if tensorboard is not None:
            from bslr.tensorboard import PackBoard  # tensorboard's protobufs, only for jobs that log to it

            self.board = PackBoard(tensorboard, runs, progress.rows)
        self.ended_with: list[bool] | None = None
        progress_file.start(budget.steps, budget.epochs, progress.step)
        self.replay(progress)

    def __enter__(self) -> PackLogs:
        return self

    def __exit__(self, *exception: object) -> None:
        """A pack that did not end (a signal, an error) leaves its TensorBoard sessions open: a re-run resumes."""
        if self.board is not None:
            self.board.close(self.ended_with)

    def replay(self, progress: Progress) -> None:
        by_step: dict[int, dict[int, dict[str, Any]]] = {}
        for index, rows in enumerate(progress.rows):
            for row in rows:
                by_step.setdefault(int(row["step"]), {})[index] = row
        for step in sorted(by_step):
            rows = [by_step[step].get(index) for index in range(len(self.lrs))]
            text = "; ".join(
                f"lr {lr:g}: " + (metrics_text(row) if row is not None else "not evaluated")
                for lr, row in zip(self.lrs, rows, strict=True)
            )
            print(
                f"epoch {self.budget.epoch_of(step)}/{self.budget.epochs} (step {step}/{self.budget.steps}, "
                f"before the stop): {text}",
                flush=True,
            )
            entries = [self.entry(progress, index, row, step) for index, row in enumerate(rows)]
            self.progress_file.replayed(step, self.budget.epoch_of(step), entries)

    def entry(self, progress: Progress, index: int, row: Mapping[str, float] | None, step: int) -> dict[str, Any]:
        """Run `index`'s state and metrics in the progress line of the evaluation at `step`."""
        lr = self.lrs[index]
        diverged_at, reached_at = progress.diverged_step[index], progress.reached[index]
        if diverged_at is not None and diverged_at <= step:
            return run_entry(lr, "diverged", row, diverged_at)
        if reached_at is not None and reached_at <= step:
            return run_entry(lr, "reached", row, reached_at)
        return run_entry(lr, "training", row)

    def evaluated(
        self,
        progress: Progress,
        metrics: list[dict[str, float]],
        evaluated: list[bool],
        seconds: float,
        left: float,
    ) -> None:
        """The evaluation at `progress.step` of the runs that were `evaluated` (active before it)."""
        step, budget = progress.step, self.budget

        def text(index: int, values: dict[str, float]) -> str:
            if progress.diverged[index] is not None and progress.diverged_step[index] < step:
                return "diverged"
            if not evaluated[index]:
                return f"reached the target at step {progress.reached[index]}"
            return metrics_text(values) + (" (target reached)" if progress.reached[index] == step else "")

        runs = "; ".join(
            f"lr {lr:g}: {text(index, values)}"
            for index, (lr, values) in enumerate(zip(self.lrs, metrics, strict=True))
        )
        print(
            f"epoch {budget.epoch_of(step)}/{budget.epochs} (step {step}/{budget.steps}, {seconds:.1f} s, "
            f"about {left:.0f} s left): {runs}",
            flush=True,
        )
        entries = [
            self.entry(progress, index, values if evaluated[index] else None, step)
            for index, values in enumerate(metrics)
        ]
        self.progress_file.evaluation(step, budget.epoch_of(step), entries, seconds, left)
        if self.board is not None:
            self.board.add(progress.rows, step)

    def ended(self, progress: Progress) -> None:
        """Training is over: every run's final state (its files are written next)."""
        self.ended_with = [diverged is not None for diverged in progress.diverged]
        final = [self.entry(progress, index, None, progress.step) for index in range(len(self.lrs))]
        for entry in final:
            if entry["state"] == "training":
                entry["state"] = "done"
        self.progress_file.end(progress.step, final)


def train_pack_to_files(
    runs: Sequence[RunSpec], outputs: list[str], options: RunOptions = RunOptions()
) -> list[pd.DataFrame]:
    """Train a pack and write each run's Parquet atomically (`outputs` in the order of `runs`); then drop
    the checkpoint unless asked to keep it."""
    if len(outputs) != len(runs):
        raise ConfigError(f"{len(runs)} runs but {len(outputs)} output files; give one output per run")
    with job_progress(runs, options.progress) as progress_file:
        results = train_pack(runs, options, progress_file)
        for (frame, metadata), output in zip(results, outputs, strict=True):
            write_table(frame, output, metadata)
    if options.checkpoint and not options.keep_checkpoint:
        Path(options.checkpoint).unlink(missing_ok=True)
    return [frame for frame, _ in results]
