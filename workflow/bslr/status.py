"""Where a config's runs stand, from what is on disk, without importing torch (`bslr status`).

A run is **done** when its per-run Parquet exists (**diverged** when its metadata says so), **failed**
when its job's log ends with an error, **stopped** when a scheduler's signal stopped it (a re-run
resumes), **in progress** when its job's log or checkpoint shows epochs but no end (a job killed without
warning looks the same; the log's age tells), and **pending** otherwise. The time left is the finished
jobs' measured time per run (Snakemake's benchmark files) times the runs not done.
"""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bslr.plan import TRAIN_BENCHMARK, TRAIN_LOG, Plan, Run, checkpoint_path, lrs_text

STATES = ("done", "diverged", "in progress", "stopped", "failed", "pending")
SYMBOLS = {"done": "#", "diverged": "D", "in progress": ">", "stopped": "s", "failed": "x", "pending": "."}
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+) ")
ERROR_LINE = re.compile(r"(error|Error|Traceback|Killed|out of memory)")
STOPPED_LINE = "stopped, received signal"
PROBLEMS = ("failed", "stopped", "in progress")  # listed per job, in this order
MAX_LISTED = 12


@dataclass(frozen=True)
class RunState:
    run: Run
    state: str
    detail: str = ""  # the epoch reached, the log's last error line
    job: str = ""  # the job that trains the run: batch size, its pack's learning rates, seed


def pack_files(plan: Plan, run: Run, root: Path) -> tuple[Path, Path, Path]:
    """The log, checkpoint and benchmark file of the job that trains `run`."""
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
    return root / TRAIN_LOG.format(**fields), root / checkpoint_path(outputs), root / TRAIN_BENCHMARK.format(**fields)


def read_log(path: Path) -> tuple[str, str]:
    """(state, detail) from a training log: the last error, a stop by signal, or the last epoch."""
    lines = path.read_text(errors="replace").splitlines()
    for line in reversed(lines):
        if STOPPED_LINE in line:
            return "stopped", line.strip()
        if ERROR_LINE.search(line) and not EPOCH_LINE.match(line):
            return "failed", line.strip()
        match = EPOCH_LINE.match(line)
        if match:
            minutes = (time.time() - path.stat().st_mtime) / 60
            return "in progress", f"epoch {match.group(1)}/{match.group(2)}, log written {minutes:.0f} min ago"
    return "in progress", "started, no epoch finished yet"


def run_states(plan: Plan, root: Path) -> list[RunState]:
    import pyarrow.parquet as pq

    states = []
    for run in plan.runs:
        path = root / run.path
        if path.is_file():
            metadata = pq.read_schema(path).metadata or {}
            diverged = metadata.get(b"diverged") == b"true"
            states.append(RunState(run, "diverged" if diverged else "done"))
            continue
        log, checkpoint, _ = pack_files(plan, run, root)
        job = f"bs {run.batch_size} lr {lrs_text(plan.pack_lrs(run))} seed {run.seed}"
        if log.is_file():
            states.append(RunState(run, *read_log(log), job=job))
        elif checkpoint.is_file():
            states.append(RunState(run, "in progress", f"checkpoint {checkpoint}", job=job))
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
        _, _, benchmark = pack_files(plan, run, root)
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
    left = 0.0
    unknown = 0
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
                remaining = sum(state.state not in ("done", "diverged") for state in mine)
                key = (experiment, dataset, model)
                if key in pace:
                    left += remaining * pace[key]
                else:
                    unknown += remaining
    lines += ["", f"legend: {legend}"]
    if total["done"] + total["diverged"] == len(states):
        lines.append("every run is done")
    elif pace:
        note = f" (and {unknown} runs of scenarios with no finished job yet)" if unknown else ""
        lines.append(f"time left: about {duration(left)} of job time at the finished jobs' pace{note}")
    else:
        lines.append("time left: unknown until a training job finishes (its benchmark file gives the pace)")
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
