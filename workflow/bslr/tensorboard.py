"""TensorBoard logs of a grid: one TensorBoard run per bslr run, under one log directory per experiment.

`tensorboard --logdir results/tensorboard/<experiment>` opens an experiment as it is: each run is named by its
data set, model, batch size, learning rate and seed, and holds
- its evaluations as scalars against the SGD step (`SCALARS`: losses, accuracies, the gap between them, the
  best test accuracy so far, the learning rate in force, the epoch, and each measure where it was taken),
  the values of its per-run Parquet in single precision (TensorBoard's scalars: its fast loader, the
  default, shows no others);
- its hyperparameters for the HParams plugin (`hyperparameters`), written when it starts, so that a running
  grid fills the table, parallel coordinates and scatter plots as it trains; each scalar's last value is a
  metric there. A run that ends is marked a success, one that diverged a failure; a running one has no end.

Training writes these live (`PackBoard`); `export` writes the same for runs that finished without logging,
from their Parquet files, through the same `RunBoard`: the two differ only in the events' wall times.
A job writes its runs' directories anew, a resumed one starting with the evaluations its checkpoint holds,
so that every step is in a run's curves once, however often its job was stopped.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams.api_pb2 import Status
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from bslr.aggregate import MEASURES
from bslr.config import RunSpec

# Each evaluation column and its scalar's tag; the measures (every other column) go under `measures/`.
SCALARS = {
    "train_loss": "loss/train",
    "test_loss": "loss/test",
    "train_acc": "accuracy/train",
    "test_acc": "accuracy/test",
    "lr": "lr",
    "epoch": "epoch",
}
GAP, BEST = "accuracy/gap", "accuracy/best_test"  # train - test accuracy; the best test accuracy so far


def budget_text(run: RunSpec) -> str:
    """A run's budget in a word or two: `20 epochs`, `600 steps`, `train_loss <= 0.1 in 20 epochs`."""
    budget = run.budget
    length = f"{budget['steps']} steps" if budget.get("steps") is not None else f"{run.epochs} epochs"
    target = budget.get("target")
    if target is None:
        return length
    relation = "<=" if target["metric"].endswith("loss") else ">="
    return f"{target['metric']} {relation} {target['value']:g} in {length}"


def hyperparameters(run: RunSpec) -> dict[str, int | float | str]:
    """What the HParams plugin shows of a run: its grid point, B/lr, its budget and weight decay, and, where it
    has one other than the paper's plain SGD, its optimizer with the ratio that governs it (`bslr.config.
    optimizer_scaling`: B(1-m)/lr, B/lr^2)."""
    values: dict[str, int | float | str] = {
        "experiment": run.experiment,
        "model": run.model,
        "dataset": run.dataset,
        "batch_size": run.batch_size,
        "lr": run.lr,
        "ratio": run.batch_size / run.lr,
        "seed": run.seed,
        "budget": budget_text(run),
        "weight_decay": run.weight_decay,
    }
    if (run.optimizer["name"], run.momentum, run.optimizer.get("nesterov", False)) == ("sgd", 0.0, False):
        return values
    _, optimizer_ratio, ratio_name = run.scaling
    return values | {
        "optimizer": run.optimizer["name"],
        "momentum": run.momentum,
        "optimizer_ratio": optimizer_ratio,
        "optimizer_ratio_name": ratio_name,
    }


def session_end(status: str) -> Summary:
    """The HParams plugin's end-of-session record with `status` (STATUS_SUCCESS, STATUS_FAILURE)."""
    content = HParamsPluginData(
        session_end_info=SessionEndInfo(status=Status.Value(status)), version=hparams_metadata.PLUGIN_DATA_VERSION
    )
    plugin = SummaryMetadata.PluginData(plugin_name=hparams_metadata.PLUGIN_NAME, content=content.SerializeToString())
    return Summary(
        value=[Summary.Value(tag=hparams_metadata.SESSION_END_INFO_TAG, metadata=SummaryMetadata(plugin_data=plugin))]
    )


class RunBoard:
    """One run's TensorBoard run: its directory written anew, its hyperparameters first, then its evaluations."""

    def __init__(self, directory: str | Path, run: RunSpec) -> None:
        shutil.rmtree(directory, ignore_errors=True)
        self.writer = SummaryWriter(log_dir=str(directory), flush_secs=3600)  # flushed after each evaluation
        _, session_start, _ = hparams(hyperparameters(run), {})
        self.writer.file_writer.add_summary(session_start)
        self.best = -math.inf

    def add(self, row: Mapping[str, Any]) -> None:
        """One evaluation row (a per-run Parquet's columns) as scalars at its step."""
        step = int(row["step"])
        for column, tag in SCALARS.items():
            self.scalar(tag, row[column], step)
        for column in MEASURES:  # NaN where not measured at this evaluation
            if column in row and math.isfinite(row[column]):
                self.scalar(f"measures/{column}", row[column], step)
        self.scalar(GAP, row["train_acc"] - row["test_acc"], step)
        if math.isfinite(row["test_acc"]):
            self.best = max(self.best, float(row["test_acc"]))
        self.scalar(BEST, self.best if self.best > -math.inf else math.nan, step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, float(value), step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, diverged: bool | None = None) -> None:
        """End the run's log: a finished run's session ends (a failure where it diverged); None leaves it open,
        as for a job stopped mid-run that a re-run resumes."""
        if diverged is not None:
            self.writer.file_writer.add_summary(session_end("STATUS_FAILURE" if diverged else "STATUS_SUCCESS"))
        self.writer.close()


class PackBoard:
    """The TensorBoard runs of a training pack, written as it trains (see the module's docstring)."""

    def __init__(self, directories: Sequence[str], runs: Sequence[RunSpec], rows: Sequence[Sequence[Mapping]]) -> None:
        """Open each run's log and write the evaluations it already has (a resumed pack's, from its checkpoint)."""
        self.boards = [RunBoard(directory, run) for directory, run in zip(directories, runs, strict=True)]
        for board, earlier in zip(self.boards, rows, strict=True):
            for row in earlier:
                board.add(row)
            board.flush()

    def add(self, rows: Sequence[Sequence[Mapping]], step: int) -> None:
        """Each run's row of the evaluation at `step`, where it has one."""
        for board, run_rows in zip(self.boards, rows, strict=True):
            if run_rows and int(run_rows[-1]["step"]) == step:
                board.add(run_rows[-1])
                board.flush()

    def close(self, diverged: Sequence[bool] | None = None) -> None:
        for index, board in enumerate(self.boards):
            board.close(None if diverged is None else diverged[index])


def export(run_files: Iterable[str | Path], logdir: str | Path | None = None, replace: bool = False) -> list[Path]:
    """Write the TensorBoard run of each per-run Parquet file, as live logging would have written it: under
    `logdir`/<experiment>/ if given, else where the workflow puts it (beside the file's `results/runs/`).
    A run whose directory exists already is left as it is unless `replace`. Returns the directories written."""
    from bslr.plan import tensorboard_dir
    from bslr.storage import read_run, run_spec_of

    written = []
    for path in run_files:
        directory = Path(tensorboard_dir(str(path), logdir))
        if directory.exists() and not replace:
            continue
        frame, metadata = read_run(path)
        board = RunBoard(directory, run_spec_of(metadata, path))
        for row in frame.to_dict("records"):
            board.add(row)
        board.close(diverged=metadata.get("diverged") == "true")
        written.append(directory)
    return written
