"""A training job's progress as JSON lines: what `bslr status` and other tools read while a grid trains.

Each training job appends one line per event to the progress file its rule declares (a Snakemake log, kept
when the job fails): `start` (the pack's length, the step it resumes from), one `evaluation` per evaluation
(the step and epoch of the pack's `steps` and `epochs`, each run's state and metrics, the seconds since the
last evaluation and the job's estimate of the seconds left), then `end` when training is over (its per-run
files are written next), `stopped` when a signal stopped it (a re-run resumes), or `failed` with the error.
Each attempt writes the file anew, a resumed one starting with its earlier evaluations from its checkpoint
(marked `"replayed": true`), so that the file tells each evaluation once.

Every line is a JSON object with `event`, `time` (Unix seconds) and `job` (the pack's learning rates); metric
values that are not finite (a diverged run's loss) are written as null. A run's `state` is `training`,
`diverged`, `reached` (its target: it stops training while the pack goes on) or `done`. The file is written
without torch and read without it, so a reader needs nothing but the JSON.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
TAIL_BYTES = 1 << 16  # a last line is read from the file's end: a pack of 20 runs writes about 4 kB a line


def finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class ProgressFile:
    """Appends a job's events to its progress file, one flushed line each (nothing where the path is None).

    Its `end`, `stopped` and `failed` lines repeat each run's last state, so that a reader of the last line
    alone knows which runs of the pack had diverged or reached their target before the job ended."""

    def __init__(self, path: str | Path | None, lrs: Sequence[float]) -> None:
        self.lrs = [float(lr) for lr in lrs]
        self.handle: TextIO | None = None
        self.length: dict[str, int] = {}  # the pack's steps and epochs, in each evaluation line
        self.states: list[dict[str, Any]] = [{"lr": lr, "state": "training"} for lr in self.lrs]
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # written anew by each attempt, which first replays the evaluations its checkpoint holds
            self.handle = open(path, "w")  # noqa: SIM115 (open for the job's life; `close` ends it)

    def write(self, event: str, **fields: Any) -> None:
        if self.handle is None:
            return
        line = {"event": event, "time": round(time.time(), 3), "job": self.lrs, **fields}
        self.handle.write(json.dumps(line, allow_nan=False) + "\n")
        self.handle.flush()

    def start(self, steps: int, epochs: int, resumed_at: int) -> None:
        self.length = dict(steps=steps, epochs=epochs)
        self.write("start", **self.length, resumed_at=resumed_at, pid=os.getpid())

    def evaluation(self, step: int, epoch: int, runs: Sequence[Mapping[str, Any]], seconds: float, left: float) -> None:
        """One evaluation of the pack: `runs` holds each run's `lr`, `state` and metrics (see `run_entry`), and
        the pack took `seconds` since the last one, with about `left` seconds to go."""
        self._evaluation(step, epoch, runs, seconds=round(seconds, 3), seconds_left=round(left, 1))

    def replayed(self, step: int, epoch: int, runs: Sequence[Mapping[str, Any]]) -> None:
        """An evaluation from before the stop that the resumed job's checkpoint holds."""
        self._evaluation(step, epoch, runs, replayed=True)

    def _evaluation(self, step: int, epoch: int, runs: Sequence[Mapping[str, Any]], **fields: Any) -> None:
        self.states = [{key: entry[key] for key in ("lr", "state", "since_step") if key in entry} for entry in runs]
        self.write("evaluation", step=step, epoch=epoch, **self.length, runs=list(runs), **fields)

    def end(self, step: int, runs: Sequence[Mapping[str, Any]]) -> None:
        """Training is over (the per-run files are written next): each run's final state."""
        self.states = list(runs)
        self.write("end", step=step, runs=self.states)

    def close(self, error: BaseException | None = None, stopped: bool = False) -> None:
        """Record how the job ended, if not by training to its end (`end`), and close the file."""
        if error is not None:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            kind = "stopped" if stopped else "failed"
            self.write(kind, error=message, error_type=type(error).__name__, runs=self.states)
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def run_entry(lr: float, state: str, metrics: Mapping[str, float] | None, step: int | None = None) -> dict[str, Any]:
    """One run's part of an evaluation line: its state, the step that state began at (diverged, reached), and
    its metrics where it was evaluated."""
    entry: dict[str, Any] = {"lr": float(lr), "state": state}
    if step is not None:
        entry["since_step"] = int(step)
    if metrics is not None:
        entry |= {name: finite_or_none(metrics[name]) for name in METRICS}
    return entry


def last_event(path: Path) -> dict[str, Any] | None:
    """The last complete line of a progress file, or None where it has none yet (a line being written is
    skipped: a reader never sees half of one)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            chunk = TAIL_BYTES
            while True:
                start = max(0, size - chunk)
                handle.seek(start)
                data = handle.read(size - start)
                end = data.rfind(b"\n")
                if end < 0:
                    if start == 0:
                        return None
                    chunk *= 4
                    continue
                begin = data.rfind(b"\n", 0, end) + 1
                if begin == 0 and start > 0:  # the line began before this chunk
                    chunk *= 4
                    continue
                return json.loads(data[begin:end])
    except FileNotFoundError:
        return None
