"""Where a config's runs stand, from what is on disk, without importing torch (`bslr status`).

A run is **done** when its per-run Parquet exists (**diverged** when its metadata says so); otherwise its
job's progress file (`bslr.progress`) tells the rest from its last line: **diverged** (its pack may train
on), **failed** with the job's error, **stopped** by a scheduler's signal or Ctrl-C (a re-run resumes), **in
progress** at an epoch, with the job's own estimate of its time left (a job killed without warning looks the
same: the line's age tells), and **pending** where no job has started. The logs' wording plays no part. The
time left is the running jobs' own estimates, plus the finished jobs' measured time per run (Snakemake's
benchmark files) times every other run not done (pending, stopped, failed, or without an estimate yet).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bslr.plan import TRAIN_BENCHMARK, TRAIN_LOG, TRAIN_PROGRESS, Plan, Run, checkpoint_path, lrs_text
from bslr.progress import last_event

STATES = ("done", "diverged", "in progress", "stopped", "failed", "pending")
SYMBOLS = {"done": "#", "diverged": "D", "in progress": ">", "stopped": "s", "failed": "x", "pending": "."}
PROBLEMS = ("failed", "stopped", "in progress")  # listed per job, in this order
MAX_LISTED = 12


@dataclass(frozen=True)
class RunState:
    run: Run
    state: str
    detail: str = ""  # the epoch reached, the job's error
    job: str = ""  # the job that trains the run: batch size, its pack's learning rates, seed
    seconds_left: float | None = None  # the job's estimate, where it is training


@dataclass(frozen=True)
class PackFiles:
    """The files of the job that trains a run."""

    log: Path
    progress: Path
    checkpoint: Path
    benchmark: Path


def pack_files(plan: Plan, run: Run, root: Path) -> PackFiles:
    lrs = plan.pack_lrs(run)
    outputs = [Run(run.experiment, run.model, run.dataset, run.batch_size, lr, run.seed).path for lr in lrs]
    fields = dict(
        experiment=run.experiment,
        dataset=run.dataset,
        model=run.model,
        batch_size=run.batch_size,
        seed=run.seed,
        lrs=lrs_text(lrs),
    )
    return PackFiles(
        root / TRAIN_LOG.format(**fields),
        root / TRAIN_PROGRESS.format(**fields),
        root / checkpoint_path(outputs),
        root / TRAIN_BENCHMARK.format(**fields),
    )


def ago(moment: float) -> str:
    return f"{(time.time() - moment) / 60:.0f} min ago"


def state_of(event: dict[str, Any], lr: float) -> tuple[str, str, float | None] | None:
    """(state, detail, seconds left) of the run at `lr` from its job's last progress line; None where the line
    is of a job that trained other learning rates under this pack's name (its config changed since)."""
    if lr not in event["job"]:
        return None
    entry = next((entry for entry in event.get("runs", []) if entry["lr"] == lr), {})  # `start` lines have none
    kind = event["event"]
    if entry.get("state") == "diverged":
        return "diverged", f"at step {entry['since_step']}", None
    if kind in ("failed", "stopped"):
        return kind, event["error"], None
    if kind == "start":
        if event["resumed_at"]:
            return (
                "in progress",
                f"resumed at step {event['resumed_at']} of {event['steps']} {ago(event['time'])}",
                None,
            )
        return "in progress", f"started {ago(event['time'])}, no evaluation yet ({event['steps']} steps)", None
    if kind == "end":
        return "in progress", f"trained ({ago(event['time'])}); its file is being written", None
    reached = f"reached its target at step {entry['since_step']}, " if entry["state"] == "reached" else ""
    where = f"{reached}epoch {event['epoch']}/{event['epochs']} (step {event['step']}/{event['steps']})"
    if event.get("replayed"):  # a resumed job, before its first new evaluation
        return "in progress", f"{where}, resumed ({ago(event['time'])})", None
    return (
        "in progress",
        f"{where}, about {event['seconds_left']:.0f} s left, written {ago(event['time'])}",
        event["seconds_left"],
    )


def run_states(plan: Plan, root: Path) -> list[RunState]:
    import pyarrow.parquet as pq

    states, events = [], {}
    for run in plan.runs:
        path = root / run.path
        if path.is_file():
            metadata = pq.read_schema(path).metadata or {}
            diverged = metadata.get(b"diverged") == b"true"
            states.append(RunState(run, "diverged" if diverged else "done"))
            continue
        files = pack_files(plan, run, root)
        job = f"bs {run.batch_size} lr {lrs_text(plan.pack_lrs(run))} seed {run.seed}"
        if files.progress not in events:
            events[files.progress] = last_event(files.progress)
        event = events[files.progress]
        known = state_of(event, run.lr) if event is not None else None
        if known is not None:
            state, detail, left = known
            states.append(RunState(run, state, detail, job, left))
        elif files.checkpoint.is_file():
            states.append(RunState(run, "in progress", f"checkpoint {files.checkpoint}", job=job))
        elif files.progress.is_file() or files.log.is_file():
            states.append(RunState(run, "in progress", "started, setting up (no progress line yet)", job=job))
        else:
            states.append(RunState(run, "pending", job=job))
    return states


def seconds_per_run(plan: Plan, root: Path, states: list[RunState]) -> dict[tuple[str, str, str], float]:
    """Measured job seconds per run, by scenario, from the finished jobs' benchmark files."""
    measured: dict[tuple[str, str, str], list[float]] = {}
    seen: set[Path] = set()
    for state in states:
        if state.state not in ("done", "diverged"):
            continue
        run = state.run
        benchmark = pack_files(plan, run, root).benchmark
        if benchmark in seen or not benchmark.is_file():
            continue
        seen.add(benchmark)
        rows = benchmark.read_text().splitlines()
        runs = len(plan.pack_lrs(run))
        if len(rows) > 1:
            measured.setdefault((run.experiment, run.dataset, run.model), []).append(
                float(rows[1].split("\t")[0]) / runs
            )
    return {key: statistics.mean(values) for key, values in measured.items()}


def grid_map(states: list[RunState]) -> list[str]:
    """Batch sizes down, learning rates across, one symbol per run (seeds: the worst state)."""
    batch_sizes = sorted({state.run.batch_size for state in states})
    lrs = sorted({state.run.lr for state in states})
    cells: dict[tuple[int, float], str] = {}
    for state in states:
        key = (state.run.batch_size, state.run.lr)
        if key not in cells or STATES.index(state.state) > STATES.index(cells[key]):
            cells[key] = state.state
    width = len(str(max(batch_sizes)))
    header = " " * (width + 4) + f"lr {lrs[0]:g} .. {lrs[-1]:g} ({len(lrs)})"
    return [header] + [
        f"  bs {batch_size:>{width}} " + "".join(SYMBOLS[cells.get((batch_size, lr), "pending")] for lr in lrs)
        for batch_size in batch_sizes
    ]


def duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def report(plan: Plan, root: Path) -> str:
    """The status text: counts per experiment and scenario, a map per scenario, problems, time left."""
    states = run_states(plan, root)
    lines = []
    legend = ", ".join(f"{symbol} {state}" for state, symbol in SYMBOLS.items())
    total = Counter(state.state for state in states)
    lines.append(f"{len(states)} runs: " + ", ".join(f"{total[name]} {name}" for name in STATES if total[name]))
    pace = seconds_per_run(plan, root, states)
    left, unknown, estimated = 0.0, 0, False
    for experiment in plan.experiments:
        for dataset in plan.config["experiments"][experiment]["datasets"]:
            for model in plan.config["experiments"][experiment]["models"]:
                mine = [
                    state
                    for state in states
                    if (state.run.experiment, state.run.dataset, state.run.model) == (experiment, dataset, model)
                ]
                counts = Counter(state.state for state in mine)
                summary = ", ".join(f"{counts[name]} {name}" for name in STATES if counts[name])
                lines += ["", f"{experiment} / {dataset} / {model}: {summary}", *grid_map(mine)]
                jobs = {
                    (PROBLEMS.index(state.state), state.run.batch_size, state.run.seed, state.job, state.detail)
                    for state in mine
                    if state.state in PROBLEMS
                }
                listed = sorted(jobs)
                lines += [f"  {PROBLEMS[order]}: {job}: {detail}" for order, _, _, job, detail in listed[:MAX_LISTED]]
                if len(listed) > MAX_LISTED:
                    lines.append(f"  ... and {len(listed) - MAX_LISTED} more jobs")
                estimates = {state.job: state.seconds_left for state in mine if state.seconds_left is not None}
                left += sum(estimates.values())
                estimated |= bool(estimates)
                remaining = sum(
                    state.state not in ("done", "diverged") and state.seconds_left is None for state in mine
                )
                key = (experiment, dataset, model)
                if key in pace:
                    left += remaining * pace[key]
                else:
                    unknown += remaining
    lines += ["", f"legend: {legend}"]
    if total["done"] + total["diverged"] == len(states):
        lines.append("every run is done")
    elif pace or estimated:
        sources = [
            name
            for name, given in (("the running jobs' estimates", estimated), ("the finished jobs' pace", pace))
            if given
        ]
        note = f" (and {unknown} runs of scenarios with no finished job yet)" if unknown else ""
        lines.append(f"time left: about {duration(left)} of job time, from {' and '.join(sources)}{note}")
    else:
        lines.append("time left: unknown until a training job evaluates or finishes (its progress and benchmark files)")
    return "\n".join(lines)


def summary(runs_table: Path, headline_table: Path, policy: str, figures: str, tables: str) -> str:
    """What a finished workflow made: runs trained and diverged, the headline test per scenario, where
    the figures and tables are (printed by the workflow's `onsuccess`)."""
    import pandas as pd

    lines = []
    if runs_table.is_file():
        runs = pd.read_parquet(runs_table, columns=["diverged"])
        lines.append(f"bslr: {len(runs)} runs in {runs_table} ({int(runs['diverged'].sum())} diverged)")
    if headline_table.is_file():
        headline = pd.read_csv(headline_table)
        rows = headline[(headline["analysis"] == "ratio") & (headline["diverged_policy"] == policy)]
        if len(rows):
            first = rows.iloc[0]
            lines.append(
                f"headline, {first['method']} of {first['outcome']} against batch size / learning rate "
                f"(diverged runs {policy}d), per scenario:"
            )
        for row in rows.itertuples():
            interval = "" if pd.isna(row.ci_low) else f", 95% CI [{row.ci_low:.3f}, {row.ci_high:.3f}]"
            lines.append(
                f"  {row.experiment} / {row.dataset} / {row.model}: {row.statistic:.3f}{interval}, "
                f"n = {row.n} cells, p = {row.p_value:.2g}, Holm p = {row.p_holm:.2g}"
            )
            beside = headline[
                (headline["analysis"] == "beside")
                & (headline["experiment"] == row.experiment)
                & (headline["model"] == row.model)
                & (headline["dataset"] == row.dataset)
            ]
            if len(beside):
                moved = ", ".join(
                    f"{other.outcome} {other.statistic:.3f} (p = {other.p_value:.2g})" for other in beside.itertuples()
                )
                lines.append(f"    beside it, against the ratio: {moved}")
            if isinstance(getattr(row, "reading", ""), str) and getattr(row, "reading", ""):
                lines.append(f"    reading: {row.reading}")
    lines.append(f"figures in {figures}, tables in {tables}; report: snakemake --report results/report.zip")
    return "\n".join(lines)
