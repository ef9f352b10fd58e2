"""Correlation tests in the paper's grouping.

Per scenario (experiment, model, dataset), as in He, Liu & Tao (2019), Section 5:
- within each fixed learning rate, the outcome against batch size (group `lr=0.01`, x `batch_size`);
- within each fixed batch size, the outcome against learning rate (group `bs=16`, x `lr`);
- over all runs, the outcome against the ratio batch size / learning rate (group `ratio`, x `ratio`).
Each group is tested with every method (Pearson r, Spearman rho; scipy.stats) and reports n and the
two-sided p-value. Groups of fewer than three runs, or with a constant variable, get NaN.
Diverged runs (NaN or infinite loss) are dropped first under the policy `exclude`; `include` keeps them
with the metrics of their last epoch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from bslr.config import format_lr
from bslr.errors import ConfigError

SCENARIO = ["experiment", "model", "dataset"]
CORRELATION_COLUMNS = SCENARIO + ["group", "x", "outcome", "method", "n", "statistic", "p_value"]

METHODS: dict[str, Callable] = {
    "pearson": scipy_stats.pearsonr,
    "spearman": scipy_stats.spearmanr,
}


def correlate(x: Sequence[float], y: Sequence[float], method: str) -> tuple[float, float]:
    """(statistic, two-sided p-value), NaN where the test is undefined."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = METHODS[method](x, y)
    return float(result.statistic), float(result.pvalue)


def groups(scenario_runs: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """The paper's groups of one scenario: (group label, x column, runs of the group)."""
    found = [(f"lr={format_lr(lr)}", "batch_size", runs) for lr, runs in scenario_runs.groupby("lr", sort=True)]
    found += [(f"bs={int(bs)}", "lr", runs) for bs, runs in scenario_runs.groupby("batch_size", sort=True)]
    found.append(("ratio", "ratio", scenario_runs))
    return found


def apply_diverged_policy(runs: pd.DataFrame, policy: str) -> pd.DataFrame:
    if policy not in ("include", "exclude"):
        raise ConfigError(f"analysis.diverged must be include or exclude, not {policy!r}")
    return runs[~runs["diverged"].astype(bool)] if policy == "exclude" else runs


def correlations(
    runs: pd.DataFrame, outcomes: Sequence[str], methods: Sequence[str], diverged: str = "exclude"
) -> pd.DataFrame:
    """One row per (scenario, group, outcome, method), in a stable order."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ConfigError(f"unknown correlation methods {unknown}; known: {', '.join(sorted(METHODS))}")
    if "diverged" in runs:
        runs = apply_diverged_policy(runs, diverged)
    rows = []
    for (experiment, model, dataset), scenario_runs in runs.groupby(SCENARIO, sort=True):
        for group, x, members in groups(scenario_runs):
            for outcome in outcomes:
                n = int((np.isfinite(members[x]) & np.isfinite(members[outcome])).sum())
                for method in methods:
                    statistic, p_value = correlate(members[x], members[outcome], method)
                    rows.append([experiment, model, dataset, group, x, outcome, method, n, statistic, p_value])
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


def markdown_table(table: pd.DataFrame, runs: pd.DataFrame | None = None, diverged: str = "exclude") -> str:
    """One Markdown section per scenario and outcome: groups as rows, methods side by side.

    Given the runs table, each section says how many runs there were and how many diverged.
    """
    lines = ["# Correlations of outcome with batch size, learning rate and their ratio", ""]
    for (experiment, model, dataset, outcome), part in table.groupby(SCENARIO + ["outcome"], sort=True):
        if runs is not None:
            scenario = runs[
                (runs["experiment"] == experiment) & (runs["model"] == model) & (runs["dataset"] == dataset)
            ]
            count = int(scenario["diverged"].astype(bool).sum())
            action = "excluded from" if diverged == "exclude" else "included in"
            lines += [
                f"{len(scenario)} runs; {count} diverged, {action} the tests (analysis.diverged: {diverged}).",
                "",
            ]
        methods = list(dict.fromkeys(part["method"]))
        header = ["group", "x", "n"] + [f"{method} {value}" for method in methods for value in ("statistic", "p")]
        lines += [f"## {experiment}: {model} on {dataset}, {outcome}", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for (group, x), rows in part.groupby(["group", "x"], sort=False):
            by_method = rows.set_index("method")
            cells = [group, x, str(rows["n"].iloc[0])]
            for method in methods:
                cells += [f"{by_method.at[method, 'statistic']:.3f}", f"{by_method.at[method, 'p_value']:.3g}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
